//! Templates in board files: `{name}` and `{namespace.name}` placeholders, `{{`/`}}` for braces.
//!
//! Rendering tracks which secrets went into the result, so the transcript can show a redacted
//! form of exactly what was sent.
//!
//! This module knows the syntax only. Which variables exist, what they mean and where a board
//! file may use them is listed once, in [`crate::board::vars::TEMPLATE_VARS`]: the loader
//! checks templates against it and boards/README.md shows it as a table.

use std::collections::BTreeMap;

use crate::secret::SecretValue;

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Lit(String),
    Var(String),
}

/// Why a template could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl Template {
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = src.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    lit.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    lit.push('}');
                }
                '{' => {
                    let mut name = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' => {
                                name.push(c)
                            }
                            Some(c) => {
                                return Err(TemplateError(format!(
                                    "unexpected {c:?} in placeholder {{{name}...}}: placeholders are {{name}} or {{namespace.name}}; write {{{{ for a literal brace"
                                )))
                            }
                            None => {
                                return Err(TemplateError(format!(
                                    "placeholder {{{name} is not closed: add '}}', or write {{{{ for a literal brace"
                                )))
                            }
                        }
                    }
                    if name.is_empty() {
                        return Err(TemplateError(
                            "empty placeholder {}: name a variable, or write {{}} for literal braces".into(),
                        ));
                    }
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Var(name));
                }
                '}' => {
                    return Err(TemplateError(
                        "lone '}': write }} for a literal brace".into(),
                    ))
                }
                c => lit.push(c),
            }
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// Names of the variables the template uses.
    pub fn vars(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with `vars`; secret values are noted in the result.
    pub fn render(&self, vars: &Vars) -> Result<Rendered, UnboundVar> {
        let mut out = Rendered::default();
        for p in &self.parts {
            match p {
                Part::Lit(s) => {
                    out.text.push_str(s);
                    out.redacted.push_str(s);
                }
                Part::Var(name) => {
                    let v = vars
                        .get(name)
                        .ok_or_else(|| UnboundVar { name: name.clone() })?;
                    out.text.push_str(v.expose());
                    if v.is_secret() {
                        out.redacted.push_str(crate::secret::REDACTED);
                        out.secrets.push(v.expose().to_string());
                    } else {
                        out.redacted.push_str(v.expose());
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A template used a variable that has no value where it was rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("variable {{{name}}} has no value here")]
pub struct UnboundVar {
    pub name: String,
}

/// The result of rendering: the real text and a form safe to log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rendered {
    pub text: String,
    pub redacted: String,
    pub secrets: Vec<String>,
}

/// Variables visible to a template.
pub type Vars = BTreeMap<String, SecretValue>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_redacts() {
        let t = Template::parse("user {user} pw {secret.password} {{x}}\n").unwrap();
        let mut v = Vars::new();
        v.insert("user".into(), SecretValue::plain("admin"));
        v.insert("secret.password".into(), SecretValue::secret("hunter2"));
        let r = t.render(&v).unwrap();
        assert_eq!(r.text, "user admin pw hunter2 {x}\n");
        assert_eq!(r.redacted, "user admin pw «secret» {x}\n");
        assert_eq!(r.secrets, vec!["hunter2".to_string()]);
    }

    #[test]
    fn rejects_bad_placeholders() {
        assert!(Template::parse("{unclosed").is_err());
        assert!(Template::parse("{}").is_err());
        assert!(Template::parse("a } b").is_err());
        assert!(Template::parse("{a b}").is_err());
    }

    #[test]
    fn missing_variable_is_an_error() {
        let t = Template::parse("{nope}").unwrap();
        assert!(t.render(&Vars::new()).is_err());
    }
}
