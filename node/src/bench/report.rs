//! The one JSON line every workload prints last on stdout, for scripts and CI to compare runs.

use serde::Serialize;
use serde_json::{Map, Value};

/// Keys [`BenchReport`] writes itself; details must not reuse them.
const FIXED_KEYS: [&str; 5] = ["workload", "value", "unit", "baseline", "ratio"];

/// The result of one workload: Herald's figure, the baseline's figure measured in the same
/// run, their ratio, and workload-specific details (latencies, the load's shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BenchReport {
    /// The workload's name, e.g. `ingest`.
    pub workload: &'static str,
    /// Herald's figure, in `unit`.
    pub value: f64,
    /// What `value` and `baseline` count, e.g. `events/s`.
    pub unit: &'static str,
    /// The baseline's figure, in `unit`: what the same workload reaches without Herald.
    pub baseline: f64,
    /// `value / baseline`; `None` (JSON `null`) when the baseline is zero, since no ratio exists.
    pub ratio: Option<f64>,
    /// Further figures and the load's parameters, keyed by name, printed after the fixed keys.
    #[serde(flatten)]
    pub details: Map<String, Value>,
}

impl BenchReport {
    /// A report with its ratio computed from `value` and `baseline`.
    pub fn new(workload: &'static str, value: f64, unit: &'static str, baseline: f64) -> Self {
        let ratio = (baseline > 0.0 && value.is_finite()).then(|| round_to(value / baseline, 4));
        Self {
            workload,
            value,
            unit,
            baseline,
            ratio,
            details: Map::new(),
        }
    }

    /// Adds one detail; `None` values print as `null`.
    ///
    /// # Panics
    /// When `key` is one of the fixed keys, which would print twice.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        assert!(
            !FIXED_KEYS.contains(&key),
            "detail {key:?} would repeat a fixed report key"
        );
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The report as one line of JSON, without a trailing newline.
    pub fn json_line(&self) -> String {
        serde_json::to_string(self).expect("a report holds only strings and numbers")
    }

    /// Prints the report as the last line of stdout.
    pub fn print(&self) {
        println!("{}", self.json_line());
    }
}

/// `value` rounded to `decimals` places, so reports do not carry float noise.
pub fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The JSON line carries every fixed key, the computed ratio and the details.
    #[test]
    fn json_line_has_fixed_keys_ratio_and_details() {
        let report = BenchReport::new("ingest", 50_000.0, "events/s", 200_000.0)
            .with("p50_ms", 1.25)
            .with("concurrency", 64)
            .with("p99_ms", Option::<f64>::None);
        let line = report.json_line();
        assert!(!line.contains('\n'));
        assert!(line.starts_with(r#"{"workload":"ingest","value":50000.0,"unit":"events/s","#));
        let parsed: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(parsed["workload"], "ingest");
        assert_eq!(parsed["value"], 50_000.0);
        assert_eq!(parsed["unit"], "events/s");
        assert_eq!(parsed["baseline"], 200_000.0);
        assert_eq!(parsed["ratio"], 0.25);
        assert_eq!(parsed["p50_ms"], 1.25);
        assert_eq!(parsed["concurrency"], 64);
        assert!(parsed["p99_ms"].is_null());
    }

    /// A baseline of zero gives no ratio rather than infinity, which JSON cannot hold.
    #[test]
    fn zero_baseline_gives_null_ratio() {
        let report = BenchReport::new("ingest", 10.0, "events/s", 0.0);
        let parsed: Value = serde_json::from_str(&report.json_line()).unwrap();
        assert!(parsed["ratio"].is_null());
    }

    /// Details cannot shadow a fixed key.
    #[test]
    #[should_panic(expected = "fixed report key")]
    fn detail_cannot_repeat_a_fixed_key() {
        let _ = BenchReport::new("ingest", 1.0, "events/s", 1.0).with("ratio", 2.0);
    }
}
