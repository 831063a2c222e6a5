//! How often a repeated failure is logged: the first time at once, then at
//! most once per period, with the number of repeats left out meanwhile. The
//! replicating worker meets the same failure at every round trip or
//! reconnection (an error reply every 20 ms, a refused connection), and the
//! error log must stay readable.

/// A failure kind's state: when it was last logged and what was left out since.
#[derive(Clone, Debug)]
struct Kind {
    text: String,
    logged_ms: u64,
    repeats: u64,
}

/// The kinds of failure seen, each logged at most once per period.
#[derive(Clone, Debug)]
pub struct Throttle {
    period_ms: u64,
    kinds: Vec<Kind>,
}

/// Kinds remembered at most; the one logged longest ago makes room.
const KINDS: usize = 32;

impl Throttle {
    pub fn new(period_ms: u64) -> Self {
        Throttle {
            period_ms,
            kinds: Vec::new(),
        }
    }

    /// A failure happened at `now_ms`. `Some(n)`: log it now, saying it was
    /// repeated `n` times since its last line (0: say nothing). `None`: leave
    /// it out; it is counted.
    pub fn check(&mut self, text: &str, now_ms: u64) -> Option<u64> {
        let period = self.period_ms;
        if let Some(k) = self.kinds.iter_mut().find(|k| k.text == text) {
            if now_ms.saturating_sub(k.logged_ms) < period {
                k.repeats += 1;
                return None;
            }
            k.logged_ms = now_ms;
            return Some(core::mem::take(&mut k.repeats));
        }
        if self.kinds.len() >= KINDS {
            if let Some(oldest) = (0..self.kinds.len()).min_by_key(|&i| self.kinds[i].logged_ms) {
                self.kinds.swap_remove(oldest);
            }
        }
        self.kinds.push(Kind {
            text: text.to_owned(),
            logged_ms: now_ms,
            repeats: 0,
        });
        Some(0)
    }

    /// The kinds whose period ended with repeats left out, with their counts:
    /// to log now, even if the failure does not come back. Each is counted
    /// as logged at `now_ms`.
    pub fn due(&mut self, now_ms: u64) -> Vec<(String, u64)> {
        let period = self.period_ms;
        self.kinds
            .iter_mut()
            .filter(|k| k.repeats > 0 && now_ms.saturating_sub(k.logged_ms) >= period)
            .map(|k| {
                k.logged_ms = now_ms;
                (k.text.clone(), core::mem::take(&mut k.repeats))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_is_logged_once_per_period_with_its_repeats() {
        let mut t = Throttle::new(60_000);
        assert_eq!(t.check("refused", 1_000), Some(0));
        for ms in (1_020..61_000).step_by(20) {
            assert_eq!(t.check("refused", ms), None);
        }
        assert_eq!(t.check("refused", 61_000), Some(2_999));
        assert_eq!(t.check("refused", 61_020), None);
    }

    #[test]
    fn kinds_are_counted_apart() {
        let mut t = Throttle::new(60_000);
        assert_eq!(t.check("map a: ERR", 0), Some(0));
        assert_eq!(t.check("map b: ERR", 10), Some(0));
        assert_eq!(t.check("map a: ERR", 20), None);
        assert_eq!(t.check("map b: ERR", 30), None);
        assert_eq!(t.check("map b: ERR", 40), None);
        assert_eq!(t.due(59_999), vec![]);
        assert_eq!(
            t.due(60_010),
            vec![("map a: ERR".to_owned(), 1), ("map b: ERR".to_owned(), 2)]
        );
        assert_eq!(t.due(200_000), vec![]);
        assert_eq!(t.check("map a: ERR", 60_020), None);
    }

    #[test]
    fn the_kinds_remembered_are_bounded() {
        let mut t = Throttle::new(60_000);
        for i in 0..1000u64 {
            assert_eq!(t.check(&format!("kind {i}"), i), Some(0));
        }
        assert!(t.kinds.len() <= KINDS);
        assert_eq!(t.check("kind 999", 1000), None);
    }
}
