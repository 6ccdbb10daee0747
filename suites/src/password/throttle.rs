//! `password.brute-force-throttled`: how fast can a guesser try passwords on a login surface?
//!
//! The test measures, on the same unit and under the same host load:
//!
//! - **control attempts**: a wrong password right after a successful login (which resets the
//!   unit's failure counter), so they show the unthrottled refusal time, harness overhead and
//!   host load included; taken before and after the burst;
//! - **a burst** of consecutive wrong passwords (`brute_force_attempts`), where throttling shows;
//! - **a lockout check**: the unit's own password right after the burst. Refused *with an
//!   answer* (a re-prompt, a lockout message) is a lockout; silence or a closed link is never
//!   one. With a declared `lockout_window` that fits the test, the test waits it out and expects
//!   the own password to be accepted again.
//!
//! From these it computes the achievable guess rate (attempts per hour on this surface) and
//! judges it against `max_guess_rate` ([`judge`], pure, unit-tested). A constant delay counts
//! for what it costs a guesser; host load cannot turn a fast unit into a slow one because the
//! decision is about a rate far from what load adds, and [`judge`] refuses to decide when the
//! spread of the measurements is larger than the distance to the threshold.

use std::time::{Duration, Instant};

use hilsec_core::board::Model;
use hilsec_core::device::{ActionError, Device};
use hilsec_core::secret::SecretValue;
use hilsec_core::test::{Outcome, Scope, Test, TestInfo, Verdict};

use super::{needs_login, own_password, timed_login, wrong_password, OwnPassword, SUITE};

/// Control attempts taken before the burst (one more is taken after it).
const CONTROLS_BEFORE: usize = 3;
/// Longest declared lockout window the test waits out to see the unit accept again.
pub const LOCKOUT_WAIT_LIMIT: Duration = Duration::from_secs(120);

pub struct BruteForceThrottled;

static BRUTE_INFO: TestInfo = TestInfo {
    id: "password.brute-force-throttled",
    suite: SUITE,
    title: "brute force is impracticable: the achievable guess rate per login surface is at most max_guess_rate",
    provisions: &["EN 303 645 5.1-5", "TS 103 701 5.1-5-1", "TS 103 701 5.1-5-2"],
    scope: Scope::Unit,
    timeout: Duration::from_secs(300),
    actions: &["factory_reset", "set_password", "login", "logout"],
};

/// What the unit did after the burst when given its own password.
#[derive(Debug, Clone, PartialEq)]
pub enum LockoutSeen {
    /// The own password was accepted: no lockout.
    None,
    /// Refused (with an answer) after `failures` consecutive failures.
    Locked {
        failures: usize,
        /// The declared window, if any.
        window: Option<Duration>,
        /// How long the lock was seen to last at least (from the end of the burst to the last
        /// refusal of the own password).
        seen_for: Duration,
        /// `Some(true)`: accepted again after the declared window; `Some(false)`: still refused
        /// after it; `None`: not waited (no window, or longer than the test can wait).
        reopened: Option<bool>,
    },
}

/// The measurements of one surface.
#[derive(Debug, Clone)]
pub struct Measurements {
    pub control: Vec<Duration>,
    pub burst: Vec<Duration>,
    pub lockout: LockoutSeen,
}

/// Figures behind a verdict (also written to results.json as `data`).
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    pub verdict: Verdict,
    pub guesses_per_hour: Option<f64>,
    pub median_refusal: Duration,
    pub control_median: Duration,
    /// Spread of the measurements the decision rests on.
    pub noise: Duration,
    /// 1-based index of the first burst attempt slower than the control by the threshold.
    pub throttled_from: Option<usize>,
    pub reason: String,
}

pub fn median(ts: &[Duration]) -> Duration {
    if ts.is_empty() {
        return Duration::ZERO;
    }
    let mut v = ts.to_vec();
    v.sort();
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn spread(ts: &[Duration]) -> Duration {
    match (ts.iter().min(), ts.iter().max()) {
        (Some(a), Some(b)) => *b - *a,
        _ => Duration::ZERO,
    }
}

fn ms(d: Duration) -> u128 {
    d.as_millis()
}

/// The steady-state part of a burst: from the first attempt slower than the controls by
/// `threshold` (and by more than their spread), or its second half when none is.
fn steady_tail(m: &Measurements, threshold: Duration) -> (Vec<Duration>, Option<usize>) {
    let c = median(&m.control);
    let margin = threshold.max(spread(&m.control));
    match m.burst.iter().position(|t| *t > c + margin) {
        Some(i) => (m.burst[i..].to_vec(), Some(i + 1)),
        None => (m.burst[m.burst.len() / 2..].to_vec(), None),
    }
}

/// Judges one surface. `max_rate` is in guesses per hour; `threshold` is the smallest added
/// delay that counts as throttling (the `throttle_threshold` declaration).
pub fn judge(m: &Measurements, max_rate: u32, threshold: Duration) -> Judgement {
    let control_median = median(&m.control);
    let (tail, throttled_from) = steady_tail(m, threshold);
    let max_rate = f64::from(max_rate.max(1));
    // The period a guesser must not beat: one attempt per `period_limit` on average.
    let period_limit = Duration::from_secs_f64(3600.0 / max_rate);
    let base = |verdict, rate, median_refusal, noise, reason: String| Judgement {
        verdict,
        guesses_per_hour: rate,
        median_refusal,
        control_median,
        noise,
        throttled_from,
        reason,
    };
    if m.burst.is_empty() {
        return base(
            Verdict::Inconclusive,
            None,
            Duration::ZERO,
            Duration::ZERO,
            "no wrong attempt was measured".into(),
        );
    }
    match &m.lockout {
        LockoutSeen::Locked {
            failures,
            window,
            seen_for,
            reopened,
        } => {
            let per_attempt = median(&m.burst);
            let noise = spread(&m.burst).max(spread(&m.control));
            let failures = (*failures).max(1);
            // A guesser gets `failures` attempts per cycle of the lock plus those attempts.
            let (lock, declared) = match (window, reopened) {
                (Some(w), Some(false)) => ((*w).max(*seen_for), true),
                (Some(w), _) => (*w, true),
                (None, _) => (*seen_for, false),
            };
            let cycle = lock + per_attempt * failures as u32;
            let rate = failures as f64 * 3600.0 / cycle.as_secs_f64().max(1e-3);
            let window_text = match (window, reopened) {
                (Some(w), Some(true)) => format!(
                    "the declared {}s window was waited out and the own password was accepted again",
                    w.as_secs()
                ),
                (Some(w), Some(false)) => format!(
                    "the own password was still refused after the declared {}s window (the lock lasts longer than declared)",
                    w.as_secs()
                ),
                (Some(w), None) => format!(
                    "declared window {}s (longer than the {}s this test waits, so not waited out)",
                    w.as_secs(),
                    LOCKOUT_WAIT_LIMIT.as_secs()
                ),
                (None, _) => format!(
                    "no lockout_window is declared; the lock was seen to last at least {} ms",
                    ms(*seen_for)
                ),
            };
            let what = format!(
                "lockout: after {failures} consecutive wrong passwords the unit, still answering, refused its own password too; {window_text}"
            );
            if rate <= max_rate {
                base(
                    Verdict::Pass,
                    Some(rate),
                    per_attempt,
                    noise,
                    format!("{what}; achievable rate {rate:.0} guesses/hour (limit {max_rate:.0})"),
                )
            } else if declared {
                base(
                    Verdict::Fail,
                    Some(rate),
                    per_attempt,
                    noise,
                    format!(
                        "{what}; but the lock is too short: {rate:.0} guesses/hour are achievable (limit {max_rate:.0})"
                    ),
                )
            } else {
                base(
                    Verdict::Inconclusive,
                    Some(rate),
                    per_attempt,
                    noise,
                    format!(
                        "{what}; without a declared window the rate can only be bounded by {rate:.0} guesses/hour (limit {max_rate:.0}): declare `lockout_window`"
                    ),
                )
            }
        }
        LockoutSeen::None => {
            let period = median(&tail);
            let noise = spread(&tail).max(spread(&m.control));
            let rate = 3600.0 / period.as_secs_f64().max(1e-3);
            let effect = period.abs_diff(period_limit);
            let shape = match throttled_from {
                Some(i) => format!(
                    "refusals slow down from wrong attempt {i} on: median {} ms against {} ms for control attempts",
                    ms(period),
                    ms(control_median)
                ),
                None => format!(
                    "no slowdown: median refusal {} ms against {} ms for control attempts",
                    ms(period),
                    ms(control_median)
                ),
            };
            if effect <= noise {
                return base(
                    Verdict::Inconclusive,
                    Some(rate),
                    period,
                    noise,
                    format!(
                        "{shape}; the spread of the measurements ({} ms) is larger than their distance to the limit of one guess per {} ms ({max_rate:.0}/hour), so no decision",
                        ms(noise),
                        ms(period_limit)
                    ),
                );
            }
            if period >= period_limit {
                base(
                    Verdict::Pass,
                    Some(rate),
                    period,
                    noise,
                    format!(
                        "{shape}; achievable rate {rate:.0} guesses/hour (limit {max_rate:.0}), and the account was not locked"
                    ),
                )
            } else {
                base(
                    Verdict::Fail,
                    Some(rate),
                    period,
                    noise,
                    format!(
                        "{shape}; {rate:.0} guesses/hour are achievable (limit {max_rate:.0}) and the account was not locked"
                    ),
                )
            }
        }
    }
}

#[async_trait::async_trait]
impl Test for BruteForceThrottled {
    fn info(&self) -> &TestInfo {
        &BRUTE_INFO
    }
    fn actions(&self, model: &Model) -> Vec<String> {
        super::login_actions(self, model)
    }

    fn not_applicable(&self, model: &Model) -> Option<String> {
        needs_login(model)
    }

    async fn run_unit(&self, dev: &mut Device) -> Outcome {
        self.body(dev).await.unwrap_or_else(Outcome::from)
    }
}

impl BruteForceThrottled {
    async fn body(&self, dev: &mut Device) -> Result<Outcome, ActionError> {
        let own = match own_password(dev).await? {
            OwnPassword::Known { password, set_now } => {
                if set_now {
                    dev.note("the password the test set at first login is the one protected here");
                }
                password
            }
            OwnPassword::Missing(o) => return Ok(o),
        };
        let decl = dev.model.declarations.clone();
        let user = decl.login_user.clone();
        let threshold = decl.throttle_threshold;
        let period_limit = Duration::from_secs_f64(3600.0 / f64::from(decl.max_guess_rate.max(1)));

        // Control attempts: each right after a successful login.
        let mut control = Vec::new();
        for i in 1..=CONTROLS_BEFORE {
            if !reset(dev, &user, &own).await? {
                return Ok(Outcome::inconclusive(format!(
                    "the unit's own password was refused before control attempt {i}: the failure counter cannot be reset, so control attempts cannot be made (check the password, or an earlier lockout)"
                )));
            }
            match timed_login(dev, &user, SecretValue::plain(wrong_password())).await? {
                (true, _) => {
                    dev.confirm_finding("a random wrong password was accepted");
                    return Ok(Outcome::fail("a random wrong password was accepted"));
                }
                (false, t) => {
                    dev.note(format!("control attempt {i}: refused after {} ms", ms(t)));
                    control.push(t);
                }
            }
        }
        if !reset(dev, &user, &own).await? {
            // One wrong attempt after a success locked the account: a lockout after 1 failure.
            return self
                .conclude(dev, &user, &own, control.clone(), control, 1)
                .await;
        }

        // The burst.
        // Past the declared threshold, to see what the unit does there.
        let attempts = decl
            .brute_force_attempts
            .max(decl.lockout_after.map_or(0, |n| n + 2))
            .min(1000);
        let mut burst: Vec<Duration> = Vec::new();
        let c = median(&control);
        for i in 1..=attempts {
            match timed_login(dev, &user, SecretValue::plain(wrong_password())).await? {
                (true, _) => {
                    dev.confirm_finding("a random wrong password was accepted");
                    return Ok(Outcome::fail("a random wrong password was accepted"));
                }
                (false, t) => {
                    dev.note(format!("wrong attempt {i}: refused after {} ms", ms(t)));
                    burst.push(t);
                }
            }
            // Enough once two throttled refusals in a row each beat the limit period by more
            // than the spread seen: the steady state is already slower than a guesser needs.
            let margin = spread(&control) + threshold.min(Duration::from_millis(500));
            let n = burst.len();
            if n >= 2
                && burst[n - 2..]
                    .iter()
                    .all(|t| *t > c + threshold && *t > period_limit + margin)
            {
                dev.note(format!(
                    "two refusals in a row slower than one guess per {} ms: the burst ends at attempt {i}",
                    ms(period_limit)
                ));
                break;
            }
        }
        let failures = burst.len();
        self.conclude(dev, &user, &own, control, burst, failures)
            .await
    }

    /// Lockout check, a control attempt after the burst, the judgement.
    async fn conclude(
        &self,
        dev: &mut Device,
        user: &str,
        own: &SecretValue,
        mut control: Vec<Duration>,
        burst: Vec<Duration>,
        failures: usize,
    ) -> Result<Outcome, ActionError> {
        let decl = dev.model.declarations.clone();
        let burst_end = Instant::now();
        let (accepted, _) = timed_login(dev, user, own.clone()).await?;
        let lockout = if accepted {
            dev.note("after the burst the unit's own password was accepted: no lockout");
            LockoutSeen::None
        } else {
            let mut seen_for = burst_end.elapsed();
            dev.note(format!(
                "after {failures} wrong attempts the unit answered and refused its own password: locked"
            ));
            let reopened = match decl.lockout_window {
                Some(w) if w <= LOCKOUT_WAIT_LIMIT => {
                    let wait = w + w / 10 + Duration::from_secs(1);
                    let left = wait.saturating_sub(burst_end.elapsed());
                    dev.note(format!(
                        "waiting out the declared lockout window ({} ms)",
                        ms(left)
                    ));
                    tokio::time::sleep(left).await;
                    let (ok, _) = timed_login(dev, user, own.clone()).await?;
                    if !ok {
                        seen_for = burst_end.elapsed();
                    }
                    Some(ok)
                }
                _ => None,
            };
            LockoutSeen::Locked {
                failures: decl.lockout_after.unwrap_or(failures).min(failures),
                window: decl.lockout_window,
                seen_for,
                reopened,
            }
        };
        // One more control after the burst, under the load of now, when the unit is usable.
        if matches!(lockout, LockoutSeen::None)
            || matches!(
                lockout,
                LockoutSeen::Locked {
                    reopened: Some(true),
                    ..
                }
            )
        {
            match timed_login(dev, user, SecretValue::plain(wrong_password())).await? {
                (true, _) => {
                    dev.confirm_finding("a random wrong password was accepted");
                    return Ok(Outcome::fail("a random wrong password was accepted"));
                }
                (false, t) => {
                    dev.note(format!(
                        "control attempt after the burst: refused after {} ms",
                        ms(t)
                    ));
                    control.push(t);
                }
            }
            // Leave the unit with a clean counter, ending on a usable answer.
            reset(dev, user, own).await?;
        }
        let m = Measurements {
            control,
            burst,
            lockout,
        };
        let j = judge(&m, decl.max_guess_rate, decl.throttle_threshold);
        let data = serde_json::json!({
            "surface": "login",
            "guesses_per_hour": j.guesses_per_hour.map(|r| (r * 10.0).round() / 10.0),
            "max_guess_rate": decl.max_guess_rate,
            "median_refusal_ms": ms(j.median_refusal) as u64,
            "control_median_ms": ms(j.control_median) as u64,
            "noise_ms": ms(j.noise) as u64,
            "throttled_from_attempt": j.throttled_from,
            "attempts": m.burst.len(),
            "control_attempts": m.control.len(),
            "lockout": !matches!(m.lockout, LockoutSeen::None),
        });
        Ok(Outcome::new(j.verdict, format!("login: {}", j.reason)).with_data(data))
    }
}

/// Logs in with the unit's own password (resetting its failure counter); `false` if refused.
async fn reset(dev: &mut Device, user: &str, own: &SecretValue) -> Result<bool, ActionError> {
    Ok(timed_login(dev, user, own.clone()).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms_v(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|m| Duration::from_millis(*m)).collect()
    }

    const T: Duration = Duration::from_millis(800);

    #[test]
    fn constant_fast_delay_fails_idle_and_loaded() {
        // 200 ms per refusal; under load everything is slower and noisier.
        for (control, burst) in [
            (
                ms_v(&[201, 203, 202, 204]),
                ms_v(&[202, 201, 203, 205, 202, 204, 203, 201]),
            ),
            (
                ms_v(&[260, 410, 330, 290]),
                ms_v(&[300, 900, 270, 450, 1300, 280, 350, 600]),
            ),
        ] {
            let j = judge(
                &Measurements {
                    control,
                    burst,
                    lockout: LockoutSeen::None,
                },
                360,
                T,
            );
            assert_eq!(j.verdict, Verdict::Fail, "{j:?}");
            assert!(j.guesses_per_hour.unwrap_or(0.0) > 360.0);
        }
    }

    #[test]
    fn constant_slow_delay_passes() {
        let j = judge(
            &Measurements {
                control: ms_v(&[15_002, 15_010, 15_004]),
                burst: ms_v(&[15_003, 15_006, 15_001, 15_008]),
                lockout: LockoutSeen::None,
            },
            360,
            T,
        );
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.throttled_from, None);
    }

    #[test]
    fn throttling_after_three_passes_when_slow_enough() {
        let m = Measurements {
            control: ms_v(&[3, 2, 4, 3]),
            burst: ms_v(&[3, 2, 4, 12_004, 12_003]),
            lockout: LockoutSeen::None,
        };
        let j = judge(&m, 360, T);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        assert_eq!(j.throttled_from, Some(4));
        // The same unit with 1 s of throttling lets 3600 guesses an hour through.
        let m = Measurements {
            burst: ms_v(&[3, 2, 4, 1_004, 1_003, 1_002, 1_003, 1_004]),
            ..m
        };
        assert_eq!(judge(&m, 360, T).verdict, Verdict::Fail);
    }

    #[test]
    fn noise_larger_than_the_effect_is_inconclusive() {
        let j = judge(
            &Measurements {
                control: ms_v(&[9_000, 11_500, 10_200]),
                burst: ms_v(&[10_100, 9_400, 11_000, 9_900]),
                lockout: LockoutSeen::None,
            },
            360,
            T,
        );
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
    }

    #[test]
    fn lockout_rate_uses_the_declared_window() {
        let locked = |window, reopened| Measurements {
            control: ms_v(&[3, 3, 4]),
            burst: ms_v(&[3, 4, 3, 3, 5]),
            lockout: LockoutSeen::Locked {
                failures: 5,
                window,
                seen_for: Duration::from_millis(10),
                reopened,
            },
        };
        // 5 guesses per 60 s: 300/hour.
        let j = judge(&locked(Some(Duration::from_secs(60)), Some(true)), 360, T);
        assert_eq!(j.verdict, Verdict::Pass, "{j:?}");
        let rate = j.guesses_per_hour.unwrap_or(f64::MAX);
        assert!((rate - 300.0).abs() < 1.0, "{rate}");
        // 5 guesses per 10 s is far too fast, even though it is a lockout.
        let j = judge(&locked(Some(Duration::from_secs(10)), Some(true)), 360, T);
        assert_eq!(j.verdict, Verdict::Fail, "{j:?}");
        // No declared window: only a bound, never a pass on a short observation.
        let j = judge(&locked(None, None), 360, T);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
    }
}
