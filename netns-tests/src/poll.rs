//! Waiting for a condition with a deadline, the only way tests wait.
//!
//! A fixed sleep is either too short on a loaded CI machine or wastes time on an idle one;
//! polling a condition is both faster and more robust, and on timeout it says what it waited for
//! and what it last saw.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// What one poll observed: the value waited for, or a description of what was seen instead.
///
/// Implemented for `Option<T>` (a miss is just "None") and for `Result<T, E: Debug>` (a miss
/// carries `E`, which the timeout message prints, so make it say what was observed).
pub trait Observation<T> {
    fn into_observation(self) -> Result<T, String>;
}

impl<T> Observation<T> for Option<T> {
    fn into_observation(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl<T, E: Debug> Observation<T> for Result<T, E> {
    fn into_observation(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Calls `check` until it yields a value or `timeout` passes; panics on timeout with `what` and
/// the last observation.
///
/// The interval starts at 20 ms and grows to 200 ms, so quick conditions are seen quickly and
/// slow ones do not spin.
pub fn poll_until<T, O: Observation<T>>(timeout: Duration, what: &str, mut check: impl FnMut() -> O) -> T {
    match try_poll_until(timeout, &mut check) {
        Ok(v) => v,
        Err(last) => panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}"),
    }
}

/// Like [`poll_until`] but returns the last observation instead of panicking.
pub fn try_poll_until<T, O: Observation<T>>(timeout: Duration, mut check: impl FnMut() -> O) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    let mut interval = Duration::from_millis(20);
    loop {
        match check().into_observation() {
            Ok(v) => return Ok(v),
            Err(last) => {
                let now = Instant::now();
                if now >= deadline {
                    return Err(last);
                }
                std::thread::sleep(interval.min(deadline - now));
                interval = (interval * 2).min(Duration::from_millis(200));
            }
        }
    }
}

/// Measures how long `check` takes to yield a value: polls every `interval` (fine-grained, for
/// a figure a test prints or a benchmark reports) and panics after `timeout` like
/// [`poll_until`]. Returns the value and the time from the call to the first successful poll.
pub fn time_until<T, O: Observation<T>>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut check: impl FnMut() -> O,
) -> (T, Duration) {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < timeout {
        match check().into_observation() {
            Ok(v) => return (v, start.elapsed()),
            Err(seen) => last = seen,
        }
        std::thread::sleep(interval);
    }
    panic!("timed out after {timeout:?} waiting for {what}; last observation: {last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_value_seen() {
        let mut n = 0;
        let v = poll_until(Duration::from_secs(5), "n to reach 3", || {
            n += 1;
            (n >= 3).then_some(n)
        });
        assert_eq!(v, 3);
    }

    #[test]
    fn timeout_reports_what_and_last_observation() {
        let err = std::panic::catch_unwind(|| {
            poll_until::<(), _>(Duration::from_millis(50), "the impossible", || Err::<(), _>("still 42"))
        })
        .unwrap_err();
        let msg = err.downcast_ref::<String>().unwrap();
        assert!(msg.contains("the impossible") && msg.contains("still 42"), "{msg}");
    }
}
