//! The one list of template variables: every `{name}` a board file may use, what it means and
//! where it exists.
//!
//! Three places must agree on these names: the loader, which refuses a template naming a
//! variable that will not exist where it is used; the `device` module (`device/mod.rs` and
//! `device/steps.rs`), which defines the values when it runs a unit; and the reference in
//! boards/README.md. [`TEMPLATE_VARS`] is the list; the loader checks against it, the README's
//! table is [`markdown_table`] (a test keeps them identical), and a test greps the `device`
//! module's files for the names they define so a new variable cannot be added there alone.

use std::collections::BTreeSet;

/// Where a template variable exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VarScope {
    /// Every template of a unit: emulator arguments and environment, interfaces, declarations,
    /// steps.
    Unit,
    /// Every template of a unit except emulator arguments (visible to every user of the
    /// machine).
    Secret,
    /// Interfaces, declarations and steps: the emulator's `ready` line has been seen.
    Emulator,
    /// Steps of the action that defines it (parameters, captures of earlier steps).
    Action,
    /// Steps of the action after an `identify` step.
    Identify,
    /// Steps inside a `chunks` loop.
    Chunk,
}

impl VarScope {
    /// Where the variable may be used, as the reference says it.
    pub fn available(self) -> &'static str {
        match self {
            VarScope::Unit => "every template",
            VarScope::Secret => "every template except emulator `args`",
            VarScope::Emulator => "interfaces, declarations, steps (not `[emulator]`)",
            VarScope::Action => "steps of the action",
            VarScope::Identify => "steps after an `identify` step",
            VarScope::Chunk => "steps inside a `chunks` loop",
        }
    }
}

/// One template variable. Upper-case parts of `name` (`VAR`, `NAME`, `PARAM`, `CAPTURE`, `N`)
/// stand for a name chosen in the board file; the rest is written as is.
#[derive(Debug, Clone, Copy)]
pub struct TemplateVar {
    pub name: &'static str,
    pub scope: VarScope,
    pub meaning: &'static str,
}

impl TemplateVar {
    /// A name written exactly as is (no part chosen in the board file).
    pub fn is_fixed(&self) -> bool {
        !self.name.bytes().any(|b| b.is_ascii_uppercase())
    }
}

const fn var(name: &'static str, scope: VarScope, meaning: &'static str) -> TemplateVar {
    TemplateVar {
        name,
        scope,
        meaning,
    }
}

/// Every template variable, in the order the reference lists them (and the loader's "known
/// are" message names the fixed unit-wide ones).
pub const TEMPLATE_VARS: &[TemplateVar] = &[
    var("unit.name", VarScope::Unit, "the unit's `name`"),
    var("unit.serial", VarScope::Unit, "the unit's `serial` (when set)"),
    var("unit.mac", VarScope::Unit, "the unit's `mac` (when set)"),
    var(
        "unit.address",
        VarScope::Unit,
        "the unit's `address` on the lab's device network; for an emulated unit without one, a loopback address 127.x.y.z hilsec picks for it (its own, as a real unit's IP address is)",
    ),
    var(
        "unit.firmware",
        VarScope::Unit,
        "the unit's `firmware`, else the model's (when set)",
    ),
    var("model.name", VarScope::Unit, "`[model] name`"),
    var(
        "model.manufacturer",
        VarScope::Unit,
        "`[model] manufacturer` (when set)",
    ),
    var(
        "declarations.login_user",
        VarScope::Unit,
        "`[declarations] login_user` (default `admin`)",
    ),
    var(
        "secret.password",
        VarScope::Secret,
        "the unit's password (redacted wherever it is logged); once read when it comes from an `action`",
    ),
    var(
        "board.dir",
        VarScope::Unit,
        "absolute path of the folder of the file that defines the model",
    ),
    var(
        "broker.address",
        VarScope::Unit,
        "`host:port` of the MQTT broker of the run (embedded or `--mqtt-broker`; when one is in use)",
    ),
    var("broker.host", VarScope::Unit, "the broker's IP address"),
    var("broker.port", VarScope::Unit, "the broker's port"),
    var(
        "unit.VAR",
        VarScope::Unit,
        "the unit's `vars` entry `VAR`; every unit of the model must define it",
    ),
    var(
        "port.NAME",
        VarScope::Unit,
        "a free loopback TCP port hilsec picks for the unit before its emulator starts (one per `NAME`, the same in every template of the unit); needs an `[emulator]`",
    ),
    var(
        "emulator.NAME",
        VarScope::Emulator,
        "named group `NAME` of the emulator's `ready` regex",
    ),
    var(
        "PARAM",
        VarScope::Action,
        "the value the caller passed for parameter `PARAM` of the action",
    ),
    var(
        "PARAM.size",
        VarScope::Action,
        "length in bytes of data parameter `PARAM` (when bytes are passed)",
    ),
    var(
        "PARAM.size_hi",
        VarScope::Action,
        "high 16 bits of `PARAM.size`",
    ),
    var(
        "PARAM.size_lo",
        VarScope::Action,
        "low 16 bits of `PARAM.size`",
    ),
    var(
        "CAPTURE",
        VarScope::Action,
        "named group `(?P<CAPTURE>...)` of an earlier `expect`/`accept` (also in a called action), or a Modbus read's `capture`",
    ),
    var(
        "CAPTURE.N",
        VarScope::Action,
        "value `N` (0, 1, ...) of a Modbus read's `capture`",
    ),
    var(
        "vendor",
        VarScope::Identify,
        "Modbus identification object 0x00 (with `capture = \"p\"`: `{p_vendor}`, likewise below)",
    ),
    var(
        "product_code",
        VarScope::Identify,
        "identification object 0x01",
    ),
    var("revision", VarScope::Identify, "identification object 0x02"),
    var(
        "vendor_url",
        VarScope::Identify,
        "identification object 0x03 (`regular`)",
    ),
    var(
        "product_name",
        VarScope::Identify,
        "identification object 0x04 (`regular`)",
    ),
    var(
        "model_name",
        VarScope::Identify,
        "identification object 0x05 (`regular`)",
    ),
    var(
        "chunk",
        VarScope::Chunk,
        "the current chunk as base64 or hex text (`encoding = \"raw\"`: only as `data = \"chunk\"`)",
    ),
    var("offset", VarScope::Chunk, "byte offset of the chunk"),
    var("offset_hi", VarScope::Chunk, "high 16 bits of `offset`"),
    var("offset_lo", VarScope::Chunk, "low 16 bits of `offset`"),
    var("length", VarScope::Chunk, "length of the chunk in bytes"),
    var("end", VarScope::Chunk, "`offset` + `length`"),
    var("index", VarScope::Chunk, "number of the chunk, from 0"),
];

/// Fixed names of a scope, in list order.
pub fn fixed_names(scope: VarScope) -> impl Iterator<Item = &'static str> {
    TEMPLATE_VARS
        .iter()
        .filter(move |v| v.scope == scope && v.is_fixed())
        .map(|v| v.name)
}

/// Fixed names every template of a unit may use (`{unit.name}`, `{secret.password}`, ...).
pub fn unit_wide_names() -> impl Iterator<Item = &'static str> {
    TEMPLATE_VARS
        .iter()
        .filter(|v| matches!(v.scope, VarScope::Unit | VarScope::Secret) && v.is_fixed())
        .map(|v| v.name)
}

/// Whether `name` may follow `port.`: letters, digits, `_` and `-`.
pub fn is_port_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Fields a data parameter `PARAM` has (`size`, `size_hi`, `size_lo`).
pub fn param_fields() -> impl Iterator<Item = &'static str> {
    TEMPLATE_VARS
        .iter()
        .filter_map(|v| v.name.strip_prefix("PARAM."))
}

/// The variables a `chunks` loop defines for its steps.
pub fn chunk_vars() -> impl Iterator<Item = &'static str> {
    fixed_names(VarScope::Chunk)
}

/// Captures of an `identify` step (Modbus device identification objects 0x00-0x05).
pub fn identify_fields() -> impl Iterator<Item = &'static str> {
    fixed_names(VarScope::Identify)
}

/// A variable a board file uses that no unit will have a value for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum UnknownVar {
    #[error(
        "{{{var}}}: the emulator's `ready` regex has no named capture {capture:?}{}",
        captures_note(.captures)
    )]
    NoCapture {
        var: String,
        capture: String,
        captures: Vec<String>,
    },
    #[error(
        "unknown variable {{{var}}}: known are {}, {{unit.VAR}} for a unit's [unit.vars], {{emulator.NAME}} for captures of the emulator's `ready` regex",
        unit_wide_names().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", ")
    )]
    Unknown { var: String },
}

fn captures_note(captures: &[String]) -> String {
    if captures.is_empty() {
        String::new()
    } else {
        format!(" (it has: {})", captures.join(", "))
    }
}

/// Checks a variable that is not an action's own (parameter, capture, chunk): the unit-wide
/// ones of [`TEMPLATE_VARS`], `{unit.VAR}` (checked per unit, where `vars` is known) and
/// `{emulator.NAME}` against the captures of the emulator's `ready` regex.
pub(crate) fn check_global_var(
    var: &str,
    emulator_vars: &BTreeSet<String>,
) -> Result<(), UnknownVar> {
    if unit_wide_names().any(|n| n == var) || var.starts_with("unit.") {
        return Ok(());
    }
    if let Some(name) = var.strip_prefix("port.") {
        if is_port_name(name) {
            return Ok(());
        }
    }
    if let Some(rest) = var.strip_prefix("emulator.") {
        if emulator_vars.contains(rest) {
            return Ok(());
        }
        return Err(UnknownVar::NoCapture {
            var: var.to_string(),
            capture: rest.to_string(),
            captures: emulator_vars.iter().cloned().collect(),
        });
    }
    Err(UnknownVar::Unknown {
        var: var.to_string(),
    })
}

/// The README's table of template variables, as generated from [`TEMPLATE_VARS`].
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | meaning | available in |\n| --- | --- | --- |\n");
    for v in TEMPLATE_VARS {
        out.push_str(&format!(
            "| `{{{}}}` | {} | {} |\n",
            v.name,
            v.meaning,
            v.scope.available()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{x}` in a name the device module builds and an upper-case part of a listed name both
    /// stand for a chosen name: compare with those replaced by `*`.
    fn shape(name: &str) -> String {
        let mut out = String::new();
        let mut chars = name.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '{' {
                for c in chars.by_ref() {
                    if c == '}' {
                        break;
                    }
                }
                out.push('*');
            } else if c.is_ascii_uppercase() {
                while chars
                    .peek()
                    .is_some_and(|c| c.is_ascii_uppercase() || *c == '_')
                {
                    chars.next();
                }
                out.push('*');
            } else {
                out.push(c);
            }
        }
        out
    }

    /// The source of the `device` module: the files in `device/` (and a `device.rs`, if any).
    fn device_source() -> String {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = vec![src.join("device.rs")];
        if let Ok(dir) = std::fs::read_dir(src.join("device")) {
            files.extend(dir.flatten().map(|e| e.path()));
        }
        let texts: Vec<String> = files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "rs"))
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect();
        assert!(
            !texts.is_empty(),
            "no source of the device module in {}",
            src.display()
        );
        texts.join("\n")
    }

    /// Names the device module puts into template variables: the string literal (or `format!`
    /// string) passed first to a `put(...)` or `insert(...)`.
    fn names_defined_in_device_rs() -> BTreeSet<String> {
        let src = device_source();
        let re = regex::Regex::new(
            r#"\b(?:put|insert)\(\s*(?:&mut [\w.]+,\s*)?&?(?:format!\(\s*)?"([^"]+)""#,
        )
        .expect("regex");
        re.captures_iter(&src).map(|c| c[1].to_string()).collect()
    }

    #[test]
    fn the_list_covers_every_variable_device_rs_defines() {
        let listed: BTreeSet<String> = TEMPLATE_VARS.iter().map(|v| shape(v.name)).collect();
        let defined = names_defined_in_device_rs();
        assert!(
            defined.len() >= 15,
            "the grep found too little: {defined:?}"
        );
        for name in &defined {
            assert!(
                listed.contains(&shape(name)),
                "the device module defines {{{name}}}, which TEMPLATE_VARS (board/vars.rs) does not list"
            );
        }
        // And the other way: every fixed unit-wide or chunk name is defined there.
        for v in TEMPLATE_VARS.iter().filter(|v| {
            v.is_fixed() && matches!(v.scope, VarScope::Unit | VarScope::Secret | VarScope::Chunk)
        }) {
            assert!(
                defined.contains(v.name),
                "{{{}}} is listed but the device module does not define it",
                v.name
            );
        }
    }

    #[test]
    fn identify_fields_are_those_the_modbus_link_reports() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/iface/modbus.rs");
        let src = std::fs::read_to_string(path).expect("read modbus.rs");
        for f in identify_fields() {
            assert!(
                src.contains(&format!("\"{f}\"")),
                "{f} not in iface/modbus.rs"
            );
        }
        assert_eq!(identify_fields().count(), 6);
    }

    #[test]
    fn the_readme_table_is_the_list() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../boards/README.md");
        let readme = std::fs::read_to_string(path).expect("read boards/README.md");
        let table = markdown_table();
        assert!(
            readme.contains(&table),
            "boards/README.md, section Templates, must hold the table generated by \
             board::vars::markdown_table():\n\n{table}"
        );
    }

    #[test]
    fn the_loader_knows_the_listed_names() {
        let none = BTreeSet::new();
        for n in unit_wide_names() {
            assert_eq!(check_global_var(n, &none), Ok(()), "{n}");
        }
        assert!(check_global_var("unit.adapter", &none).is_ok());
        let console: BTreeSet<String> = ["console".to_string()].into();
        assert!(check_global_var("emulator.console", &console).is_ok());
        assert!(check_global_var("emulator.modbus", &console)
            .unwrap_err()
            .to_string()
            .contains("(it has: console)"));
        let msg = check_global_var("foo.bar", &none).unwrap_err().to_string();
        assert!(msg.starts_with("unknown variable {foo.bar}: known are {unit.name}, {unit.serial}, {unit.mac}, {unit.address}, {unit.firmware}, {model.name}, {model.manufacturer}, {declarations.login_user}, {secret.password}, {board.dir}, {broker.address}, {broker.host}, {broker.port}, {unit.VAR}"), "{msg}");
        assert_eq!(
            chunk_vars().collect::<Vec<_>>(),
            [
                "chunk",
                "offset",
                "offset_hi",
                "offset_lo",
                "length",
                "end",
                "index"
            ]
        );
        assert_eq!(
            param_fields().collect::<Vec<_>>(),
            ["size", "size_hi", "size_lo"]
        );
    }
}
