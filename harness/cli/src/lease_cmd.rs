//! `hilsec lease` and the run's lease options: which run holds which unit of a shared bench
//! (the leases themselves are `hilsec_core::lease`).

use std::path::PathBuf;
use std::time::Duration;

use hilsec_core::lease::{self, LeaseEntry, LeaseSettings};

#[derive(Debug, clap::Args)]
pub struct LeaseArgs {
    /// How long to wait for a unit another run holds, e.g. 5m (default: do not wait).
    #[arg(long, value_name = "DURATION", value_parser = crate::parse_duration)]
    pub lease_wait: Option<Duration>,
    /// The folder of the bench's lease files (default: $HILSEC_LEASE_DIR, else /run/lock/hilsec
    /// when /run/lock is writable, else <temp>/hilsec-leases).
    #[arg(long, value_name = "DIR")]
    pub lease_dir: Option<PathBuf>,
}

impl LeaseArgs {
    /// The runner's lease settings; `out`: the run's output folder, noted in each lease.
    pub fn settings(&self, out: &std::path::Path) -> LeaseSettings {
        LeaseSettings {
            dir: self.lease_dir.clone(),
            wait: self.lease_wait.unwrap_or(Duration::ZERO),
            out: Some(out.to_path_buf()),
            ..LeaseSettings::default()
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum LeaseCommand {
    /// List the leases of this host's lease folder: key, holder, host, pid, since, expires,
    /// state (held, stale: its holder died, expired: its holder stopped renewing, free,
    /// unknown: its lock could not be examined).
    List {
        /// One JSON object per lease.
        #[arg(long)]
        json: bool,
        /// The folder of the bench's lease files (default as for `hilsec run`).
        #[arg(long, value_name = "DIR")]
        lease_dir: Option<PathBuf>,
    },
}

pub fn run(cmd: LeaseCommand) -> i32 {
    let LeaseCommand::List { json, lease_dir } = cmd;
    let dir = lease::lease_dir(lease_dir.as_deref());
    let entries = match lease::list(&dir) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("hilsec lease list: {e}");
            return 2;
        }
    };
    if json {
        for e in &entries {
            match serde_json::to_string(e) {
                Ok(line) => println!("{line}"),
                Err(err) => {
                    eprintln!("hilsec lease list: {err}");
                    return 2;
                }
            }
        }
        return 0;
    }
    print!("{}", table(&dir, &entries));
    0
}

fn table(dir: &std::path::Path, entries: &[LeaseEntry]) -> String {
    if entries.is_empty() {
        return format!("no leases in {}\n", dir.display());
    }
    let header = ["KEY", "HOLDER", "HOST", "PID", "SINCE", "EXPIRES", "STATE"];
    let rows: Vec<[String; 7]> = entries
        .iter()
        .map(|e| {
            let r = e.record.as_ref();
            let field = |f: &dyn Fn(&lease::LeaseRecord) -> String| r.map(f).unwrap_or("-".into());
            // Records are written by whoever can write the folder: no escape sequences of
            // theirs reach the terminal.
            [
                printable(&e.key),
                field(&|r| printable(&r.holder)),
                field(&|r| printable(&r.host)),
                r.map(|r| r.pid.to_string())
                    .or(e.lock_pid.map(|p| p.to_string()))
                    .unwrap_or("-".into()),
                field(&|r| printable(&r.started)),
                field(&|r| printable(&r.expires)),
                e.state.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = format!("leases in {}\n", dir.display());
    out.push_str(&line(header.to_vec()));
    for row in &rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// `text` without control characters (C0, DEL, C1: escape sequences among them), each shown
/// as `?`; empty as `-`.
fn printable(text: &str) -> String {
    if text.is_empty() {
        return "-".into();
    }
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_fields_reach_the_table_without_control_characters() {
        let record = lease::LeaseRecord {
            key: "bench/\u{1b}]0;pwned\u{7}a".into(),
            holder: "eve\u{1b}[2J".into(),
            host: "h\u{9b}31mred\r".into(),
            pid: 42,
            pid_start: None,
            started: "2026-12-02T10:02:11Z\u{1b}[1A".into(),
            expires: "2026-12-02T10:12:11Z".into(),
            out: None,
            command: Some("hilsec run \u{1b}[5m".into()),
        };
        let entry = LeaseEntry {
            key: record.key.clone(),
            state: lease::LeaseState::Held,
            record: Some(record),
            lock_pid: None,
            lock_file: PathBuf::from("/tmp/x.lock"),
        };
        let t = table(std::path::Path::new("/tmp"), &[entry]);
        assert!(!t.chars().any(|c| c.is_control() && c != '\n'), "{t:?}");
        assert!(t.contains("eve?[2J") && t.contains("h?31mred?"), "{t}");
    }
}
