//! Calls between actions: `{ call = "login", args = {...} }` steps, checked as a graph.
//!
//! A call is resolved against the whole model, not step by step: it may name an action written
//! later in the file, must pass exactly the callee's parameters, and no chain of calls may come
//! back to an action already running (a recipe that recurses would never end on a device). The
//! callee's captures become variables of the caller's later steps, which the step checks need
//! before all actions are built, so they are read from the raw file here.

use std::collections::{BTreeMap, BTreeSet};

use serde_spanned::Spanned;

use super::diag::Diag;
use super::model::{RawBoardFile, StepSection};
use super::{Action, Step};

/// Names the action `callee` (as written in `raw`) captures, in any of its steps: after a call
/// of it, they are variables of the caller.
pub(crate) fn callee_captures(raw: &RawBoardFile, callee: &str, known: &mut BTreeSet<String>) {
    let Some(callee) = raw.actions.get(callee) else {
        return;
    };
    let mut stack: Vec<&Spanned<StepSection>> = callee.get_ref().steps.iter().collect();
    while let Some(st) = stack.pop() {
        let st_ref = st.get_ref();
        for p in [&st_ref.expect, &st_ref.accept].into_iter().flatten() {
            if let Ok(r) = regex::bytes::Regex::new(p.get_ref()) {
                known.extend(r.capture_names().flatten().map(str::to_string));
            }
        }
        if let Some(c) = &st_ref.capture {
            known.insert(c.clone());
        }
        stack.extend(st_ref.steps.iter());
    }
}

/// Calls name existing actions, pass exactly their parameters, and do not recurse.
pub(crate) fn check_calls(d: &mut Diag, raw: &RawBoardFile, actions: &BTreeMap<String, Action>) {
    fn flatten(steps: &[Spanned<StepSection>]) -> Vec<&Spanned<StepSection>> {
        let mut out = Vec::new();
        for s in steps {
            out.push(s);
            out.extend(flatten(&s.get_ref().steps));
        }
        out
    }
    for (name, act) in &raw.actions {
        let a = act.get_ref();
        for step in flatten(&a.steps).into_iter().chain(flatten(&a.cleanup)) {
            let Some(call) = &step.get_ref().call else {
                continue;
            };
            let Some(callee) = actions.get(call.get_ref()) else {
                let have: Vec<&str> = actions.keys().map(String::as_str).collect();
                d.at(
                    Some(call.span()),
                    format!(
                        "action {name:?} calls {:?}, which is not defined (defined: {})",
                        call.get_ref(),
                        have.join(", ")
                    ),
                    None,
                );
                continue;
            };
            for p in &callee.params {
                if !step.get_ref().args.contains_key(p) {
                    d.at(
                        Some(step.span()),
                        format!("call of {:?} lacks argument {p:?}", callee.name),
                        Some("add it under `args`"),
                    );
                }
            }
            for k in step.get_ref().args.keys() {
                if !callee.params.contains(k) {
                    d.at(
                        Some(step.span()),
                        format!(
                            "call of {:?} passes {k:?}, which is not one of its params ({})",
                            callee.name,
                            callee.params.join(", ")
                        ),
                        None,
                    );
                }
            }
        }
    }
    // Cycles: depth-first over the call graph.
    fn visit<'a>(
        n: &'a str,
        actions: &'a BTreeMap<String, Action>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if stack.contains(&n) {
            let mut c: Vec<String> = stack.iter().map(|s| s.to_string()).collect();
            c.push(n.to_string());
            return Some(c);
        }
        stack.push(n);
        if let Some(a) = actions.get(n) {
            for s in a.steps.iter().chain(a.cleanup.iter()).flat_map(Step::walk) {
                if let Step::Call { action, .. } = s {
                    if let Some(c) = visit(action, actions, stack) {
                        return Some(c);
                    }
                }
            }
        }
        stack.pop();
        None
    }
    for (name, act) in &raw.actions {
        if let Some(cycle) = visit(name, actions, &mut Vec::new()) {
            d.at(
                Some(act.span()),
                format!("actions call each other in a cycle: {}", cycle.join(" -> ")),
                None,
            );
            break;
        }
    }
}
