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
            for (k, v) in &step.get_ref().args {
                if !callee.params.contains(k) {
                    d.at(
                        Some(v.span()),
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
            // At the call that starts the cycle (`call = "b"` in action a of a -> b -> a).
            let a = act.get_ref();
            let at = flatten(&a.steps)
                .into_iter()
                .chain(flatten(&a.cleanup))
                .filter_map(|st| st.get_ref().call.as_ref())
                .find(|c| cycle.get(1) == Some(c.get_ref()))
                .map_or(act.span(), |c| c.span());
            d.at(
                Some(at),
                format!("actions call each other in a cycle: {}", cycle.join(" -> ")),
                Some("a recipe that calls itself again never ends on a device: remove one of these calls"),
            );
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{error, load, HEAD};
    use super::super::{testutil, Step};

    #[test]
    fn calls_may_point_forward_and_see_the_callees_captures() {
        let text = format!(
            "{HEAD}
[actions.a]
steps = [
  {{ call = \"b\", args = {{ user = \"root\" }} }},
  {{ send = \"{{shell}}\" }},
]

[actions.b]
params = [\"user\"]
steps = [ {{ send = \"{{user}}\\n\" }}, {{ expect = '(?P<shell>[#$]) $' }} ]
"
        );
        let m = load("forward", &text).expect("loads");
        match &m.actions["a"].steps[0] {
            Step::Call { action, args } => {
                assert_eq!(action, "b");
                assert_eq!(args.keys().collect::<Vec<_>>(), ["user"]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_call_names_a_defined_action_with_exactly_its_params() {
        let text = format!(
            "{HEAD}\n[actions.a]\nsteps = [ {{ call = \"nope\" }} ]\n\n[actions.b]\nsteps = [ {{ wait = \"1ms\" }} ]\n"
        );
        let (line, col, msg, _) = error("undefined", &text);
        assert_eq!((line, col), (9, 20), "{msg}");
        assert_eq!(
            msg,
            "action \"a\" calls \"nope\", which is not defined (defined: a, b)"
        );

        let text = format!(
            "{HEAD}\n[actions.a]\nsteps = [ {{ call = \"b\", args = {{ x = \"1\" }} }} ]\n\n[actions.b]\nparams = [\"user\"]\nsteps = [ {{ wait = \"1ms\" }} ]\n"
        );
        let errs = testutil::load("args", &text).expect_err("refused");
        let msgs: Vec<&str> = errs.iter().map(|e| e.message.as_str()).collect();
        assert_eq!(
            msgs,
            [
                "call of \"b\" lacks argument \"user\"",
                "call of \"b\" passes \"x\", which is not one of its params (user)"
            ]
        );
        // The missing argument at the step, the extra one at its value.
        let places: Vec<_> = errs.iter().map(|e| (e.line, e.col)).collect();
        assert_eq!(places, [(9, 11), (9, 38)], "{errs:?}");
    }

    #[test]
    fn call_cycles_are_refused_once_with_their_path() {
        let text = format!(
            "{HEAD}
[actions.a]
steps = [ {{ call = \"b\" }} ]

[actions.b]
steps = [ {{ chunks = \"x\", steps = [ {{ call = \"c\" }} ] }} ]
params = [\"x\"]

[actions.c]
steps = [ {{ wait = \"1ms\" }} ]
cleanup = [ {{ call = \"a\" }} ]
"
        );
        let errs = testutil::load("cycle", &text).expect_err("refused");
        let cycles: Vec<_> = errs
            .iter()
            .filter(|e| e.message.contains("cycle"))
            .collect();
        assert_eq!(cycles.len(), 1, "{errs:?}");
        assert_eq!(
            cycles[0].message,
            "actions call each other in a cycle: a -> b -> c -> a"
        );
        assert_eq!(
            (cycles[0].line, cycles[0].col),
            (9, 20),
            "at a's call of b: {errs:?}"
        );
        // (a's call of b passes no `x`: that is the other error.)
        let (_, _, msg, _) = error(
            "self",
            &format!("{HEAD}\n[actions.a]\nsteps = [ {{ call = \"a\" }} ]\n"),
        );
        assert_eq!(msg, "actions call each other in a cycle: a -> a");
    }
}
