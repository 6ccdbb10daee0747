//! A stand-alone `image` command, showing how the harness wires `hilsec image ...` in a few
//! lines (and handy for trying the commands before the harness binary has them):
//!
//! ```text
//! cargo run -p hilsec-image --example image_cli -- verify --key key.pem image.bin
//! ```

use clap::Parser;
use hilsec_image::cli::{run, ImageCommand};

#[derive(Parser)]
#[command(name = "image", about = "MCUboot image tools (hilsec image ...)")]
struct Cli {
    #[command(subcommand)]
    command: ImageCommand,
}

fn main() {
    let cli = Cli::parse();
    let code = match run(&cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            2
        }
    };
    std::process::exit(code);
}
