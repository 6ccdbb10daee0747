//! Pure analyses behind the disclosure suite: EN 303 645 5.2-1 (a published vulnerability
//! disclosure policy with a contact and timelines), 5.3-13 (a published support period with an
//! end date), PSTI Schedule 1 paragraphs 2 and 3 (the period not shortened since an earlier
//! run), and CSAF 2.0 provider metadata. (EN 303 645 5.3-16, the model designation, is judged
//! in the suite itself from what the unit reports.)
//!
//! The suite fetches pages and reads declarations; everything here works on bytes it was
//! given: no I/O, no async, no clock. Every function takes arbitrary input (hostile pages,
//! truncated bodies, invalid UTF-8) without panicking, within bounded time and memory, so a
//! manufacturer's web site can never crash or stall a run. Each module's doc comment states
//! its heuristic precisely, because verdicts cite it as evidence.

pub mod csaf;
pub mod policy;
pub mod suite;
pub mod support;
mod text;
mod url;

pub use csaf::{
    check_provider_metadata, check_security_txt_csaf, CsafFindings, Problem, SecurityTxtCsaf,
    Severity,
};
pub use policy::{analyse_policy, PolicyFindings, PolicyVerdict};
pub use suite::suite;
pub use support::{
    analyse_support, compare_support_end, read_support_data, support_data, PeriodChange,
    SupportFindings, SUPPORT_END_KEY,
};
pub use text::MAX_PAGE_BYTES;
