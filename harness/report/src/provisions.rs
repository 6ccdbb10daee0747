//! The provision catalogue behind `report.html`: which provisions of each framework the report
//! knows (with a short title each), how Singapore's CLS Level 1 is read from EN 303 645, and what
//! the harness does not judge at all, so a reader of the report sees both what the tests evidence
//! and what a human assessor still has to assess.
//!
//! Records name provisions as plain strings (`ResultRecord::provisions`, e.g. `EN 303 645 5.1-1`,
//! `TS 103 701 5.1-1-2 a`, `PSTI Sch.1 1(3)(c)`); this module sorts them into frameworks. A
//! provision a suite cites that is missing here still appears in the report, under its framework
//! and marked as not catalogued: the catalogue gives titles and an order, never a filter.
//!
//! The titles are hilsec's own short paraphrases, not the standards' text: read the provision
//! itself (ETSI EN 303 645 V2.1.1, ETSI TS 103 701 V1.1.1, the UK Product Security and
//! Telecommunications Infrastructure (Security Requirements for Relevant Connectable Products)
//! Regulations 2023, Schedule 1) before relying on one.

/// A framework the report's matrix has a column group for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Framework {
    /// ETSI EN 303 645, the baseline's provisions.
    En303645,
    /// ETSI TS 103 701, the test specification for EN 303 645 (test cases and their units).
    Ts103701,
    /// UK PSTI regulations, Schedule 1.
    Psti,
    /// Singapore's Cybersecurity Labelling Scheme, Level 1 (derived, see [`CLS_LEVEL_1`]).
    ClsLevel1,
    /// Anything else a test cites (RFC 9116, CSAF 2.0, ...).
    Other,
}

impl Framework {
    /// Every framework, in the report's order.
    pub const ALL: [Framework; 5] = [
        Framework::En303645,
        Framework::Ts103701,
        Framework::Psti,
        Framework::ClsLevel1,
        Framework::Other,
    ];

    /// The framework's name as a heading.
    pub fn title(self) -> &'static str {
        match self {
            Framework::En303645 => "ETSI EN 303 645 provisions",
            Framework::Ts103701 => "ETSI TS 103 701 test units",
            Framework::Psti => "UK PSTI, Schedule 1 paragraphs",
            Framework::ClsLevel1 => "Singapore CLS Level 1 (derived from EN 303 645)",
            Framework::Other => "Other references",
        }
    }

    /// A stable identifier (HTML ids, CSS classes).
    pub fn key(self) -> &'static str {
        match self {
            Framework::En303645 => "en303645",
            Framework::Ts103701 => "ts103701",
            Framework::Psti => "psti",
            Framework::ClsLevel1 => "cls1",
            Framework::Other => "other",
        }
    }

    /// The prefix provisions of this framework carry in records (none for CLS Level 1, which no
    /// record names, and for `Other`).
    pub fn prefix(self) -> Option<&'static str> {
        match self {
            Framework::En303645 => Some("EN 303 645 "),
            Framework::Ts103701 => Some("TS 103 701 "),
            Framework::Psti => Some("PSTI Sch.1 "),
            Framework::ClsLevel1 | Framework::Other => None,
        }
    }

    /// The catalogued provisions of this framework, in the report's order.
    pub fn catalogue(self) -> &'static [Provision] {
        match self {
            Framework::En303645 => EN_303_645,
            Framework::Ts103701 => TS_103_701,
            Framework::Psti => PSTI,
            Framework::ClsLevel1 | Framework::Other => &[],
        }
    }
}

/// One provision as records name it, with its column label and short title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provision {
    /// Exactly as in `ResultRecord::provisions`, e.g. `EN 303 645 5.1-1`.
    pub id: &'static str,
    /// hilsec's short paraphrase (not the standard's text).
    pub title: &'static str,
}

impl Provision {
    /// The column label: the id without its framework prefix (`5.1-1`, `1(3)(c)`, `para 2`).
    pub fn label(&self) -> &'static str {
        split(self.id).1
    }
}

/// The framework of a provision string and its label within it. Unknown prefixes are `Other`
/// with the whole string as label.
pub fn split(provision: &str) -> (Framework, &str) {
    for f in [Framework::En303645, Framework::Ts103701, Framework::Psti] {
        if let Some(rest) = f.prefix().and_then(|p| provision.strip_prefix(p)) {
            return (f, rest.trim());
        }
    }
    (Framework::Other, provision)
}

/// The catalogue entry of `provision`, if any.
pub fn find(provision: &str) -> Option<&'static Provision> {
    let (f, _) = split(provision);
    f.catalogue().iter().find(|p| p.id == provision)
}

/// EN 303 645 provisions the suites evidence (see `provisions:` in `suites/src`).
pub const EN_303_645: &[Provision] = &[
    Provision {
        id: "EN 303 645 5.1-1",
        title: "no universal default password: unique per unit or set by the user",
    },
    Provision {
        id: "EN 303 645 5.1-2",
        title: "unique per-unit passwords are not guessable or derivable",
    },
    Provision {
        id: "EN 303 645 5.1-5",
        title: "brute force over network interfaces is impracticable",
    },
    Provision {
        id: "EN 303 645 5.2-1",
        title: "a vulnerability disclosure policy is published",
    },
    Provision {
        id: "EN 303 645 5.3-2",
        title: "updates are installed through a secure mechanism",
    },
    Provision {
        id: "EN 303 645 5.3-7",
        title: "the update mechanism uses best-practice cryptography",
    },
    Provision {
        id: "EN 303 645 5.3-9",
        title: "the device checks updates' authenticity and integrity",
    },
    Provision {
        id: "EN 303 645 5.3-10",
        title: "updates over a network are verified through a trust relationship",
    },
    Provision {
        id: "EN 303 645 5.3-13",
        title: "the defined support period is published",
    },
    Provision {
        id: "EN 303 645 5.3-16",
        title: "the model designation is clearly recognisable",
    },
    Provision {
        id: "EN 303 645 5.5-5",
        title: "security-relevant configuration over the network needs authentication",
    },
    Provision {
        id: "EN 303 645 5.6-4",
        title: "a physically accessible debug interface is disabled in software",
    },
];

/// TS 103 701 test cases and test units the suites evidence. TS 103 701 numbers its test cases
/// after the provision (`5.1-1-2` is a test case of provision 5.1-1); a trailing letter is one
/// unit of a test case.
pub const TS_103_701: &[Provision] = &[
    Provision {
        id: "TS 103 701 5.1-1-1",
        title: "universal default passwords are refused on every login surface",
    },
    Provision {
        id: "TS 103 701 5.1-1-2",
        title: "per-unit passwords are unique across units",
    },
    Provision {
        id: "TS 103 701 5.1-1-2 a",
        title: "no undeclared login service is reachable",
    },
    Provision {
        id: "TS 103 701 5.1-2-1",
        title: "passwords follow no counter or identity pattern",
    },
    Provision {
        id: "TS 103 701 5.1-2-2",
        title: "passwords are not common and resist guessing",
    },
    Provision {
        id: "TS 103 701 5.1-5-1",
        title: "repeated failed logins are slowed or locked out",
    },
    Provision {
        id: "TS 103 701 5.1-5-2",
        title: "the achievable guess rate is impracticably low",
    },
    Provision {
        id: "TS 103 701 5.2-1-1",
        title: "the disclosure policy is public and names contact and timelines",
    },
    Provision {
        id: "TS 103 701 5.3-2-2",
        title: "a genuine update installs through the update mechanism",
    },
    Provision {
        id: "TS 103 701 5.3-9-1",
        title: "tampered, unsigned or rolled-back images are rejected",
    },
    Provision {
        id: "TS 103 701 5.3-13-1",
        title: "the support period is published with an end date",
    },
    Provision {
        id: "TS 103 701 5.3-16-1",
        title: "the reported model designation matches the declared one",
    },
    Provision {
        id: "TS 103 701 5.6-4-1",
        title: "the debug port refuses access",
    },
];

/// UK PSTI Schedule 1 paragraphs the suites evidence.
pub const PSTI: &[Provision] = &[
    Provision {
        id: "PSTI Sch.1 1(2)",
        title: "passwords are unique per product or defined by the user",
    },
    Provision {
        id: "PSTI Sch.1 1(3)(a)",
        title: "not based on incremental counters",
    },
    Provision {
        id: "PSTI Sch.1 1(3)(b)",
        title: "not based on publicly available information",
    },
    Provision {
        id: "PSTI Sch.1 1(3)(c)",
        title: "not derived from product identifiers such as serial numbers",
    },
    Provision {
        id: "PSTI Sch.1 1(3)(d)",
        title: "not otherwise guessable",
    },
    Provision {
        id: "PSTI Sch.1 para 2",
        title: "how to report security issues is published",
    },
    Provision {
        id: "PSTI Sch.1 para 3",
        title: "the minimum security update period is published, not shortened",
    },
];

/// One requirement of CLS Level 1 and the EN 303 645 provisions it is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClsRequirement {
    /// The column label.
    pub label: &'static str,
    pub title: &'static str,
    /// EN 303 645 provisions, as records name them.
    pub en_303_645: &'static [&'static str],
}

/// Where [`CLS_LEVEL_1`] comes from, shown on the page next to the CLS columns.
///
/// No record names a CLS requirement; the column group is derived. The Cyber Security Agency of
/// Singapore (CSA) describes Level 1 as the product meeting basic security requirements "such
/// as ensuring unique default passwords and providing software updates", and says the scheme
/// takes reference from ETSI EN 303 645; its Level 1 is a declaration of conformity to the
/// baseline of unique default passwords, a vulnerability disclosure policy and software updates
/// with a declared support period. Which EN 303 645 provisions stand for each is hilsec's
/// reading, not CSA's list: in particular the secure update mechanism is read as 5.3-2 plus the
/// authenticity check of 5.3-10. CSA's CLS technical specification is the authority; check it
/// before relying on these columns.
pub const CLS_MAPPING_NOTE: &str = "No test names CLS requirements: these columns are derived. \
CSA describes CLS Level 1 as basic security requirements such as unique default passwords and \
software updates, referencing ETSI EN 303 645; hilsec reads it as the EN 303 645 baseline below \
(its own mapping, not CSA's list: check CSA's CLS technical specification before relying on it). \
Each cell is the worst verdict over the model's tests evidencing the listed EN 303 645 provisions.";

/// hilsec's reading of CLS Level 1 (see [`CLS_MAPPING_NOTE`]).
pub const CLS_LEVEL_1: &[ClsRequirement] = &[
    ClsRequirement {
        label: "Unique default passwords",
        title: "no universal default passwords; per-unit passwords not guessable",
        en_303_645: &["EN 303 645 5.1-1", "EN 303 645 5.1-2"],
    },
    ClsRequirement {
        label: "Vulnerability disclosure",
        title: "a vulnerability disclosure policy is published",
        en_303_645: &["EN 303 645 5.2-1"],
    },
    ClsRequirement {
        label: "Software updates",
        title: "updates install through a secure mechanism that verifies them",
        en_303_645: &["EN 303 645 5.3-2", "EN 303 645 5.3-10"],
    },
    ClsRequirement {
        label: "Support period",
        title: "the defined support period is published",
        en_303_645: &["EN 303 645 5.3-13"],
    },
];

/// Something an assessor must judge that no test of the harness evidences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Manual {
    /// The provision(s) or test case(s), e.g. `EN 303 645 5.1-3`.
    pub reference: &'static str,
    /// What has to be assessed, and on what.
    pub what: &'static str,
}

/// The part of the baseline a human assessor must still judge: TS 103 701's conceptual
/// assessments (of the manufacturer's ICS/IXIT documentation) and provisions that are about the
/// manufacturer's processes rather than the device's behaviour. The harness evidences behaviour
/// of the units on the bench only.
pub const NOT_AUTOMATED: &[Manual] = &[
    Manual {
        reference: "EN 303 645 5.1-1, 5.1-2 (TS 103 701 conceptual cases)",
        what: "how per-unit passwords are generated and provisioned, and that user-defined \
               passwords are forced before first use: documentation review (IXIT)",
    },
    Manual {
        reference: "EN 303 645 5.1-3",
        what: "user authentication uses best-practice cryptography suited to the technology",
    },
    Manual {
        reference: "EN 303 645 5.1-4",
        what: "users have a simple way to change the authentication value",
    },
    Manual {
        reference: "EN 303 645 5.1-5 (conceptual)",
        what: "the documented anti-brute-force mechanism covers every network authentication \
               surface, including ones the bench does not reach",
    },
    Manual {
        reference: "EN 303 645 5.2-1 (conceptual)",
        what: "the disclosure policy's content is adequate (scope, how reports are handled); \
               the tests only check that it is public and names a contact and timelines",
    },
    Manual {
        reference: "EN 303 645 5.2-2, 5.2-3",
        what: "reported vulnerabilities are acted on in time; the manufacturer monitors for and \
               rectifies vulnerabilities: process evidence",
    },
    Manual {
        reference: "EN 303 645 5.3-1, 5.3-3 to 5.3-6",
        what: "all software components are updatable; updates are simple to apply; automatic \
               updates and update checks and how they are configured",
    },
    Manual {
        reference: "EN 303 645 5.3-8",
        what: "security updates are timely: process evidence",
    },
    Manual {
        reference: "EN 303 645 5.3-11, 5.3-12",
        what: "users are told that an update is needed and when it disrupts basic functions",
    },
    Manual {
        reference: "EN 303 645 5.3-13 (conceptual)",
        what: "the support period is published in a way that is accessible, clear and \
               transparent to a consumer; the tests only find and parse the declared page",
    },
    Manual {
        reference: "EN 303 645 5.3-14, 5.3-15",
        what: "constrained devices that cannot be updated: published rationale, replaceable \
               hardware",
    },
    Manual {
        reference: "PSTI Sch.1 para 2 and 3",
        what: "the published information is accessible and clear without a request, and \
               reports are acknowledged and followed up as stated",
    },
    Manual {
        reference: "PSTI statement of compliance",
        what: "the statement of compliance accompanying the product",
    },
    Manual {
        reference: "CLS Level 1 application",
        what: "the manufacturer's declaration of conformity and supporting evidence submitted \
               to CSA",
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provisions_split_into_their_framework() {
        assert_eq!(split("EN 303 645 5.1-1"), (Framework::En303645, "5.1-1"));
        assert_eq!(
            split("TS 103 701 5.1-1-2 a"),
            (Framework::Ts103701, "5.1-1-2 a")
        );
        assert_eq!(split("PSTI Sch.1 1(3)(c)"), (Framework::Psti, "1(3)(c)"));
        assert_eq!(split("PSTI Sch.1 para 2"), (Framework::Psti, "para 2"));
        assert_eq!(split("RFC 9116"), (Framework::Other, "RFC 9116"));
        assert_eq!(find("PSTI Sch.1 para 3").map(|p| p.label()), Some("para 3"));
        assert!(find("EN 303 645 9.9-9").is_none());
    }

    #[test]
    fn catalogue_entries_are_well_formed_and_unique() {
        let mut seen = std::collections::HashSet::new();
        for f in Framework::ALL {
            for p in f.catalogue() {
                assert_eq!(split(p.id).0, f, "{} is filed under {f:?}", p.id);
                assert!(seen.insert(p.id), "{} twice", p.id);
                assert!(!p.title.is_empty());
            }
        }
    }

    #[test]
    fn cls_level_1_is_read_from_catalogued_en_303_645_provisions() {
        for r in CLS_LEVEL_1 {
            assert!(!r.en_303_645.is_empty(), "{}", r.label);
            for p in r.en_303_645 {
                assert_eq!(split(p).0, Framework::En303645, "{p}");
                assert!(find(p).is_some(), "{p} not catalogued");
            }
        }
        // The baseline the scheme names: passwords, disclosure, updates, support period.
        let all: Vec<&str> = CLS_LEVEL_1
            .iter()
            .flat_map(|r| r.en_303_645.iter().copied())
            .collect();
        for p in ["EN 303 645 5.1-1", "EN 303 645 5.2-1", "EN 303 645 5.3-13"] {
            assert!(all.contains(&p), "{p}");
        }
    }
}
