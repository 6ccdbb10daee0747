//! Helpers for the loader's unit tests: board files written to a scratch folder and loaded
//! through the public entry point, so each seam is tested as a lab would meet it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::{load_boards, Board, BoardError, LoadMode, Model};

/// A scratch folder, removed when dropped.
pub(crate) struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "hilsec-load-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        Scratch(dir)
    }

    /// Writes `text` to `rel` (creating folders) and returns its path.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.0.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `paths` in `mode`; the boards, or all errors.
pub(crate) fn load_paths(paths: &[PathBuf], mode: LoadMode) -> Result<Vec<Board>, Vec<BoardError>> {
    load_boards(paths, mode).map_err(|e| e.0)
}

/// Loads `text` as one board file (check mode); the errors, or the model.
pub(crate) fn load(name: &str, text: &str) -> Result<Arc<Model>, Vec<BoardError>> {
    let s = Scratch::new(name);
    let file = s.file("board.toml", text);
    load_paths(&[file], LoadMode::Check).map(|mut b| b.remove(0).model)
}

/// The one error of `text`: its line, column, message and help.
pub(crate) fn error(name: &str, text: &str) -> (usize, usize, String, Option<String>) {
    let errs = load(name, text).expect_err("a load error");
    assert_eq!(errs.len(), 1, "{errs:?}");
    let e = &errs[0];
    (e.line, e.col, e.message.clone(), e.help.clone())
}

/// A model with one serial interface `console` (6 lines, then a blank line is up to the test).
pub(crate) const HEAD: &str =
    "[model]\nname = \"T\"\n\n[interfaces.console]\nkind = \"serial\"\npath = \"/dev/null\"\n";
