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

use serde_spanned::Spanned;

use super::build::build_model;
use super::diag::{plain_error, toml_help, BoardError, BoardErrors, Diag};
use super::model::RawBoardFile;
use super::units::{build_unit, check_unique_names};
use super::{Board, Model};

/// What the caller will do with the boards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `hilsec run` (and `check-board`'s second pass, which warns about what a run would
    /// refuse): files found in folders that declare no unit are model templates and skipped; a
    /// file named explicitly must declare units; `env` secrets must be set.
    Run,
    /// `hilsec check-board` and `hilsec list`, which start nothing: every file is validated,
    /// with or without units, and an unset `env` secret is not an error.
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
            Err(mut e) => {
                in_file_order(&mut e);
                errors.append(&mut e)
            }
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

/// Sorts the problems of each file by their place, so they read top to bottom (the seams
/// report in the order they check, not in the order of the file); files keep their order.
fn in_file_order(errors: &mut [BoardError]) {
    let mut files: Vec<PathBuf> = Vec::new();
    for e in errors.iter() {
        if !files.contains(&e.path) {
            files.push(e.path.clone());
        }
    }
    errors.sort_by_key(|e| (files.iter().position(|f| *f == e.path), e.line, e.col));
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
        let (text, raw) = parse_file(path)?;
        let mut d = Diag::new(path, &text);

        let model = if let Some(ext) = &raw.extends {
            self.extended_model(path, ext, &raw, &mut d)?
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

    /// The model a unit file (`path`, parsed as `raw`) extends: loaded once per model file,
    /// one level only. Errors name this file (`extends` misused) or the model file (its own
    /// problems).
    fn extended_model(
        &mut self,
        path: &Path,
        ext: &Spanned<String>,
        raw: &RawBoardFile,
        d: &mut Diag,
    ) -> Result<Arc<Model>, Vec<BoardError>> {
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
            return Err(std::mem::take(&mut d.errors));
        }
        let base = path.parent().unwrap_or(Path::new(".")).join(ext.get_ref());
        let key = base.canonicalize().unwrap_or_else(|_| base.clone());
        if let Some(m) = self.models.get(&key) {
            return Ok(m.clone());
        }
        if !base.is_file() {
            d.at(
                Some(ext.span()),
                format!(
                    "extends {:?}, which is not a readable file",
                    base.display().to_string()
                ),
                Some("the path is relative to this board file"),
            );
            return Err(std::mem::take(&mut d.errors));
        }
        let (base_text, base_raw) = parse_file(&base)?;
        if base_raw.extends.is_some() {
            d.at(
                Some(ext.span()),
                "the extended file itself uses `extends`; only one level is supported",
                None,
            );
            return Err(std::mem::take(&mut d.errors));
        }
        let mut bd = Diag::new(&base, &base_text);
        let m = build_model(&base, &base_raw, &mut bd);
        if !bd.errors.is_empty() {
            return Err(bd.errors);
        }
        let m = Arc::new(m.ok_or_else(Vec::new)?);
        self.models.insert(key, m.clone());
        Ok(m)
    }
}

/// A board file's text and its parse (`deny_unknown_fields`, spans kept).
fn parse_file(path: &Path) -> Result<(String, RawBoardFile), Vec<BoardError>> {
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
    Ok((text, raw))
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::super::testutil::{load_paths, Scratch};
    use super::LoadMode;

    const MODEL: &str = "[model]\nname = \"Cam\"\n\n[interfaces.c]\nkind = \"serial\"\npath = \"/dev/{unit.tty}\"\n";

    fn unit_file(name: &str, model: &str) -> String {
        format!("extends = \"{model}\"\n\n[[unit]]\nname = \"{name}\"\nvars = {{ tty = \"ttyUSB0\" }}\n")
    }

    #[test]
    fn unit_files_extending_one_model_share_it_whatever_the_order() {
        // The model file sorts last ("model.toml") or first ("a-model.toml") in its folder.
        for model in ["model.toml", "a-model.toml"] {
            let s = Scratch::new("extends");
            s.file(model, MODEL);
            s.file("cam-1.toml", &unit_file("cam-1", model));
            s.file(
                "sub/cam-2.toml",
                &unit_file("cam-2", &format!("../{model}")),
            );
            for mode in [LoadMode::Run, LoadMode::Check] {
                let boards = load_paths(&[s.path().to_path_buf()], mode).expect("loads");
                let with_units: Vec<_> = boards.iter().filter(|b| !b.units.is_empty()).collect();
                assert_eq!(with_units.len(), 2, "{model} {mode:?}");
                assert!(
                    Arc::ptr_eq(&with_units[0].model, &with_units[1].model),
                    "{model} {mode:?}"
                );
                assert_eq!(with_units[0].model.name, "Cam");
                assert!(with_units[0].model.source.ends_with(model));
                // A model file in a folder is a template: not run by itself.
                if mode == LoadMode::Run {
                    assert_eq!(boards.len(), 2, "{model}");
                }
            }
        }
    }

    #[test]
    fn extends_is_one_level_of_units_only() {
        let s = Scratch::new("extends-bad");
        s.file("model.toml", MODEL);
        s.file("mid.toml", &unit_file("x", "model.toml"));
        let cases = [
            (
                unit_file("u", "mid.toml"),
                "only one level is supported",
                (1, 11),
            ),
            (
                unit_file("u", "model.toml")
                    .replace("\n\n[[unit]]", "\n\n[model]\nname = \"X\"\n\n[[unit]]"),
                "may only declare [[unit]] tables",
                (1, 11),
            ),
            (
                unit_file("u", "nope.toml"),
                "which is not a readable file",
                (1, 11),
            ),
        ];
        for (text, words, place) in cases {
            let f = s.file("u.toml", &text);
            let errs = load_paths(std::slice::from_ref(&f), LoadMode::Check).expect_err(words);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert_eq!(errs[0].path, f);
            assert_eq!((errs[0].line, errs[0].col), place, "{words}: {errs:?}");
            assert!(errs[0].message.contains(words), "{errs:?}");
        }
    }

    #[test]
    fn errors_of_an_extended_model_name_the_model_file() {
        let s = Scratch::new("extends-err");
        let model = s.file(
            "model.toml",
            &MODEL.replace("kind = \"serial\"", "kind = \"serial\"\nbaud = \"fast\""),
        );
        let unit = s.file("u.toml", &unit_file("u", "model.toml"));
        let errs = load_paths(&[unit], LoadMode::Check).expect_err("refused");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(
            (&errs[0].path, errs[0].line, errs[0].col),
            (&model, 6, 8),
            "{errs:?}"
        );
        assert!(errs[0].help.is_some());
    }

    #[test]
    fn problems_are_listed_in_file_order() {
        let s = Scratch::new("order");
        // Declarations are checked first, interfaces next, steps last: the file's order is
        // interface (line 7), step (line 10), declarations (line 13).
        let text = format!(
            "{MODEL}broker = \"b\"\n\n[actions.a]\nsteps = [ {{ wait = \"1 fortnight\" }} ]\n\n[declarations]\nlockout_after = 0\n"
        );
        let f = s.file("order.toml", &text);
        let errs = load_paths(&[f], LoadMode::Check).expect_err("refused");
        let lines: Vec<usize> = errs.iter().map(|e| e.line).collect();
        assert_eq!(lines, [7, 10, 13], "{errs:?}");
    }

    #[test]
    fn what_run_needs_that_check_does_not() {
        let s = Scratch::new("modes");
        let model = s.file("model.toml", MODEL);
        let boards = load_paths(std::slice::from_ref(&model), LoadMode::Check).expect("checks");
        assert!(boards[0].units.is_empty());
        let errs = load_paths(&[model], LoadMode::Run).expect_err("nothing to run");
        assert!(errs[0].message.contains("declares no [[unit]]"), "{errs:?}");
        let empty = s.path().join("empty");
        std::fs::create_dir(&empty).expect("mkdir");
        let errs = load_paths(&[empty, s.path().join("missing.toml")], LoadMode::Check)
            .expect_err("refused");
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("holds no board files"), "{msgs:?}");
        assert!(msgs[1].starts_with("cannot read board file"), "{msgs:?}");
    }
}
