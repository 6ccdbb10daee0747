//! Standalone `check`, for trying the validator without the `hilsec` binary:
//! `cargo run -p hilsec-securitytxt --example check -- FILE [--now RFC3339] [--json]`.

use clap::Parser;
use hilsec_securitytxt::cli;

#[derive(Parser)]
#[command(about = "Validate a security.txt (RFC 9116)")]
struct Top {
    #[command(flatten)]
    args: cli::Args,
}

fn main() {
    let top = Top::parse();
    let code = match cli::run(&top.args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}
