//! The retry policy of every network call: a bounded number of attempts
//! with doubling pauses in between. Callers decide what is worth another
//! try; this module decides how often and how long to wait.

use std::fmt;
use std::time::Duration;

/// How often and how patiently a transient failure is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; at least one is always made.
    pub attempts: u32,
    /// The pause after the first failure; each later pause doubles.
    pub first_backoff: Duration,
}

/// What one attempt came to.
pub enum Attempt<T, E> {
    Done(T),
    /// A failure that may pass (a timeout, a 5xx answer).
    Transient(E),
    /// A failure that another attempt would only repeat.
    Final(E),
}

/// The failure an operation ended with, and how many attempts it took.
#[derive(Debug)]
pub struct Failure<E> {
    pub error: E,
    pub attempts: u32,
}

impl<E> Failure<E> {
    /// ` (after N attempts)` when more than one was made, for messages.
    pub fn attempts_note(&self) -> String {
        if self.attempts > 1 {
            format!(" (after {} attempts)", self.attempts)
        } else {
            String::new()
        }
    }
}

impl RetryPolicy {
    /// Runs `attempt` until it is done, fails for good, or the attempts
    /// run out. `label` names the operation in the debug log line of each
    /// retry.
    pub fn run<T, E: fmt::Display>(
        &self,
        label: &dyn fmt::Display,
        mut attempt: impl FnMut() -> Attempt<T, E>,
    ) -> Result<T, Failure<E>> {
        let mut backoff = self.first_backoff;
        let mut made = 1;
        loop {
            match attempt() {
                Attempt::Done(value) => return Ok(value),
                Attempt::Transient(error) if made < self.attempts.max(1) => {
                    tracing::debug!("{label}: {error}; retrying in {backoff:?}");
                    std::thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2);
                    made += 1;
                }
                Attempt::Transient(error) | Attempt::Final(error) => {
                    return Err(Failure {
                        error,
                        attempts: made,
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUICK: RetryPolicy = RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(1),
    };

    #[test]
    fn retries_transient_failures_up_to_the_limit() {
        let mut calls = 0;
        let out: Result<(), _> = QUICK.run(&"op", || {
            calls += 1;
            Attempt::Transient("down")
        });
        let failure = out.unwrap_err();
        assert_eq!((calls, failure.attempts), (3, 3));
        assert_eq!(failure.attempts_note(), " (after 3 attempts)");
    }

    #[test]
    fn stops_at_success_or_a_final_failure() {
        let mut calls = 0;
        let out = QUICK.run(&"op", || {
            calls += 1;
            if calls == 2 {
                Attempt::Done(7)
            } else {
                Attempt::Transient("once")
            }
        });
        assert_eq!(out.unwrap(), 7);
        let out: Result<(), _> = QUICK.run(&"op", || Attempt::Final("no"));
        let failure = out.unwrap_err();
        assert_eq!(
            (failure.attempts, failure.attempts_note()),
            (1, String::new())
        );
    }
}
