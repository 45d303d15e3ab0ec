//! The `workers` key.

/// The most workers (TAP queues) a node runs.
pub const MAX_WORKERS: u64 = 16;

/// Validate `workers` (default 1). Several need a `[tap]`: the workers read
/// its queues.
pub fn parse(workers: Option<u64>, has_tap: bool) -> Result<usize, String> {
    match workers {
        None => Ok(1),
        Some(w) if !(1..=MAX_WORKERS).contains(&w) => {
            Err(format!("{w} is out of range 1..={MAX_WORKERS}"))
        }
        Some(w) if w > 1 && !has_tap => {
            Err(format!("{w} workers need a [tap] (they read its queues)"))
        }
        Some(w) => Ok(w as usize),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_by_default_bounded_and_only_with_a_tap() {
        assert_eq!(parse(None, true), Ok(1));
        assert_eq!(parse(None, false), Ok(1));
        assert_eq!(parse(Some(1), false), Ok(1));
        assert_eq!(parse(Some(4), true), Ok(4));
        assert_eq!(parse(Some(0), true), Err("0 is out of range 1..=16".into()));
        assert_eq!(
            parse(Some(17), true),
            Err("17 is out of range 1..=16".into())
        );
        assert!(parse(Some(2), false).unwrap_err().contains("need a [tap]"));
    }
}
