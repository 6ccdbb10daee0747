//! Finding board files and resolving `extends`: the loader's entry point.
//!
//! `load_boards` turns the paths of a command line into files (folders searched for `*.toml`),
//! loads each one, and follows a unit file's `extends` to its model file exactly once, so a
//! model file and the unit files extending it are one model everywhere. What a file *means* is
//! built by the other seams: [`super::build`] (the model), [`super::units`] (units and their
//! secrets). All problems of all files are collected before returning, so a lab fixes a file in
//! one pass.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::build::build_model;
use super::diag::{plain_error, toml_help, BoardError, BoardErrors, Diag};
use super::model::RawBoardFile;
use super::units::{build_unit, check_unique_names};
use super::{Board, Model};

/// What the caller will do with the boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `hilsec run` / `list`: files found in folders that declare no unit are model templates
    /// and skipped; a file named explicitly must declare units.
    Run,
    /// `hilsec check-board`: every file is validated, with or without units.
    Check,
}

/// Loads every board file under `paths` (files, or folders searched recursively for `*.toml`).
pub fn load_boards(paths: &[PathBuf], mode: LoadMode) -> Result<Vec<Board>, BoardErrors> {
    let mut errors = Vec::new();
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    for p in paths {
        match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => match toml_files_under(p) {
                Ok(mut found) => {
                    if found.is_empty() {
                        errors.push(plain_error(
                            p,
                            "folder holds no board files (*.toml)",
                            Some("point --board at a board file or a folder of them"),
                        ));
                    }
                    found.sort();
                    files.extend(found.into_iter().map(|f| (f, false)));
                }
                Err(e) => errors.push(plain_error(p, &format!("cannot read folder: {e}"), None)),
            },
            Ok(_) => files.push((p.clone(), true)),
            Err(e) => errors.push(plain_error(
                p,
                &format!("cannot read board file: {e}"),
                Some("check the path; board files are TOML files or folders of them"),
            )),
        }
    }

    let mut loader = Loader {
        env_optional: mode == LoadMode::Check,
        ..Loader::default()
    };
    let mut boards = Vec::new();
    for (file, explicit) in files {
        match loader.load_file(&file) {
            Ok(Some(board)) => {
                if board.units.is_empty() && explicit && mode == LoadMode::Run {
                    errors.push(plain_error(
                        &file,
                        "declares no [[unit]]: nothing to run",
                        Some("add a [[unit]] table, or write a unit file with `extends = \"this-file.toml\"`"),
                    ));
                } else if !board.units.is_empty() || mode == LoadMode::Check {
                    boards.push(board);
                }
            }
            Ok(None) => {}
            Err(mut e) => errors.append(&mut e),
        }
    }

    check_unique_names(&boards, &mut errors);

    if errors.is_empty() {
        Ok(boards)
    } else {
        errors.dedup();
        Err(BoardErrors(errors))
    }
}

fn toml_files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "toml") {
                out.push(path);
            }
        }
    }
    Ok(out)
}

#[derive(Default)]
struct Loader {
    /// Models already loaded, by canonical path, so units extending one model share it.
    models: HashMap<PathBuf, Arc<Model>>,
    /// `check-board` validates structure on machines that hold no secrets: an unset
    /// environment variable is only an error when the board is about to run.
    env_optional: bool,
}

impl Loader {
    /// Loads one file. `Ok(None)`: a pure model file already loaded through `extends`.
    fn load_file(&mut self, path: &Path) -> Result<Option<Board>, Vec<BoardError>> {
        let text = read_text(path)?;
        let raw: RawBoardFile = toml::from_str(&text).map_err(|e| {
            let mut d = Diag::new(path, &text);
            d.at(
                e.span(),
                e.message().trim().to_string(),
                toml_help(e.message()),
            );
            d.errors
        })?;
        let mut d = Diag::new(path, &text);

        let model = if let Some(ext) = &raw.extends {
            if raw.model.is_some()
                || raw.declarations.is_some()
                || raw.emulator.is_some()
                || !raw.interfaces.is_empty()
                || !raw.actions.is_empty()
            {
                d.at(
                    Some(ext.span()),
                    "a file with `extends` may only declare [[unit]] tables",
                    Some("move model, interfaces, actions, declarations and emulator into the model file"),
                );
                return Err(d.errors);
            }
            let base = path.parent().unwrap_or(Path::new(".")).join(ext.get_ref());
            let key = base.canonicalize().unwrap_or_else(|_| base.clone());
            if let Some(m) = self.models.get(&key) {
                m.clone()
            } else {
                if !base.is_file() {
                    d.at(
                        Some(ext.span()),
                        format!(
                            "extends {:?}, which is not a readable file",
                            base.display().to_string()
                        ),
                        Some("the path is relative to this board file"),
                    );
                    return Err(d.errors);
                }
                let base_text = read_text(&base)?;
                let base_raw: RawBoardFile = toml::from_str(&base_text).map_err(|e| {
                    let mut bd = Diag::new(&base, &base_text);
                    bd.at(
                        e.span(),
                        e.message().trim().to_string(),
                        toml_help(e.message()),
                    );
                    bd.errors
                })?;
                if base_raw.extends.is_some() {
                    d.at(
                        Some(ext.span()),
                        "the extended file itself uses `extends`; only one level is supported",
                        None,
                    );
                    return Err(d.errors);
                }
                let mut bd = Diag::new(&base, &base_text);
                let m = build_model(&base, &base_raw, &mut bd);
                if !bd.errors.is_empty() {
                    return Err(bd.errors);
                }
                let m = Arc::new(m.ok_or_else(Vec::new)?);
                self.models.insert(key, m.clone());
                m
            }
        } else {
            let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
            let m = build_model(path, &raw, &mut d);
            match m {
                Some(m) if d.errors.is_empty() => {
                    // Loaded already as the base of a unit file that `extends` it: keep that
                    // model, so its units and this file's units are one model.
                    if let Some(cached) = self.models.get(&key) {
                        if raw.unit.is_empty() {
                            return Ok(None);
                        }
                        cached.clone()
                    } else {
                        let m = Arc::new(m);
                        self.models.insert(key, m.clone());
                        m
                    }
                }
                _ => return Err(d.errors),
            }
        };

        let mut units = Vec::new();
        for u in &raw.unit {
            if let Some(unit) = build_unit(path, u, &model, &mut d, self.env_optional) {
                units.push(unit);
            }
        }
        if d.errors.is_empty() {
            Ok(Some(Board { model, units }))
        } else {
            Err(d.errors)
        }
    }
}

fn read_text(path: &Path) -> Result<String, Vec<BoardError>> {
    let bytes = std::fs::read(path).map_err(|e| {
        vec![plain_error(
            path,
            &format!("cannot read board file: {e}"),
            Some("check the path and its permissions"),
        )]
    })?;
    String::from_utf8(bytes).map_err(|e| {
        vec![plain_error(
            path,
            &format!(
                "not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
            Some("board files are UTF-8 TOML"),
        )]
    })
}
