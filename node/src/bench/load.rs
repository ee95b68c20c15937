//! A closed-loop load driver shared by the workloads: a fixed number of workers each keep one
//! request in flight for a warmup and then a measured window, and only what completes inside
//! the window counts.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How long a request still in flight at the end of the window may take before its worker
/// gives up on it, so the run always ends shortly after its duration.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(5);

/// How often the progress bar is redrawn.
const PROGRESS_TICK: Duration = Duration::from_millis(200);

/// The timing of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadShape {
    /// Time under load before measuring, so connections, caches and the server's batching
    /// settle and do not weigh on the figures.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
}

/// What one request achieved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CallOutcome {
    /// Operations (events, messages...) the server accepted.
    pub succeeded: u64,
    /// Operations it rejected or never answered for.
    pub failed: u64,
    /// Whether the request itself failed (transport error or gRPC status), so its latency is
    /// not one of a served request.
    pub request_failed: bool,
    /// Why something failed, for the summary; only built when something did.
    pub error: Option<String>,
}

impl CallOutcome {
    /// A request that failed as a whole, losing its `operations`.
    pub fn request_failed(operations: u64, error: String) -> Self {
        Self {
            succeeded: 0,
            failed: operations,
            request_failed: true,
            error: Some(error),
        }
    }
}

/// One source of requests; the driver runs each worker in its own task, one request at a time.
pub trait LoadWorker: Send + 'static {
    /// Sends one request and says what came of it. Must not panic on server errors.
    fn call(&mut self) -> impl Future<Output = CallOutcome> + Send;
}

/// What a run achieved inside its measured window.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadOutcome {
    /// The measured window.
    pub window: Duration,
    /// Operations accepted in the window.
    pub succeeded: u64,
    /// Operations rejected or lost in the window.
    pub failed: u64,
    /// Requests completed in the window.
    pub requests: u64,
    /// Requests of those that failed as a whole.
    pub failed_requests: u64,
    /// The first failure seen during the whole run (warmup included), to explain failures.
    pub first_error: Option<String>,
    /// Latency of the requests served in the window.
    pub latency: LatencySummary,
}

impl LoadOutcome {
    /// Accepted operations per second of the window.
    pub fn per_second(&self) -> f64 {
        self.succeeded as f64 / self.window.as_secs_f64()
    }
}

/// Percentiles of request latency, in milliseconds; `None` when no request was served.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencySummary {
    /// Median.
    pub p50_ms: Option<f64>,
    /// 99th percentile.
    pub p99_ms: Option<f64>,
}

impl LatencySummary {
    /// Percentiles of `micros` (which it sorts), by nearest rank.
    pub fn from_micros(micros: &mut [u32]) -> Self {
        micros.sort_unstable();
        Self {
            p50_ms: percentile_ms(micros, 50.0),
            p99_ms: percentile_ms(micros, 99.0),
        }
    }
}

/// The nearest-rank `percentile` of sorted `micros`, in milliseconds.
fn percentile_ms(sorted_micros: &[u32], percentile: f64) -> Option<f64> {
    if sorted_micros.is_empty() {
        return None;
    }
    let rank = (percentile / 100.0 * sorted_micros.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted_micros.len()) - 1;
    Some(f64::from(sorted_micros[index]) / 1_000.0)
}

/// When the measured window opens and closes.
#[derive(Debug, Clone, Copy)]
struct Window {
    opens: Instant,
    closes: Instant,
}

impl Window {
    fn contains(&self, instant: Instant) -> bool {
        self.opens <= instant && instant <= self.closes
    }
}

/// What one worker saw inside the window.
#[derive(Debug, Default)]
struct WorkerTally {
    succeeded: u64,
    failed: u64,
    requests: u64,
    failed_requests: u64,
    first_error: Option<String>,
    /// Latency of each served request, microseconds; a flat vector because a run is bounded
    /// in time, and sorting once at the end is cheaper than a histogram update per request.
    latencies_micros: Vec<u32>,
}

/// Runs `workers` concurrently for `shape.warmup + shape.duration`, with a progress bar on
/// stderr labelled `label`, and tallies the measured window.
pub async fn drive<W: LoadWorker>(label: &str, shape: LoadShape, workers: Vec<W>) -> LoadOutcome {
    let started = Instant::now();
    let window = Window {
        opens: started + shape.warmup,
        closes: started + shape.warmup + shape.duration,
    };
    let accepted_so_far = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    for worker in workers {
        tasks.spawn(run_worker(worker, window, Arc::clone(&accepted_so_far)));
    }
    let bar = progress_bar(label, shape);
    let progress = tokio::spawn(show_progress(
        bar.clone(),
        started,
        shape,
        Arc::clone(&accepted_so_far),
    ));

    let mut outcome = LoadOutcome {
        window: shape.duration,
        succeeded: 0,
        failed: 0,
        requests: 0,
        failed_requests: 0,
        first_error: None,
        latency: LatencySummary {
            p50_ms: None,
            p99_ms: None,
        },
    };
    let mut latencies_micros = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let tally = match joined {
            Ok(tally) => tally,
            Err(error) => std::panic::resume_unwind(error.into_panic()),
        };
        outcome.succeeded += tally.succeeded;
        outcome.failed += tally.failed;
        outcome.requests += tally.requests;
        outcome.failed_requests += tally.failed_requests;
        if outcome.first_error.is_none() {
            outcome.first_error = tally.first_error;
        }
        latencies_micros.extend_from_slice(&tally.latencies_micros);
    }
    progress.abort();
    bar.finish_and_clear();
    outcome.latency = LatencySummary::from_micros(&mut latencies_micros);
    outcome
}

/// Keeps one request of `worker` in flight until the window closes.
async fn run_worker<W: LoadWorker>(
    mut worker: W,
    window: Window,
    accepted_so_far: Arc<AtomicU64>,
) -> WorkerTally {
    let mut tally = WorkerTally::default();
    let give_up_at = window.closes + IN_FLIGHT_GRACE;
    loop {
        let sent = Instant::now();
        if sent >= window.closes {
            break;
        }
        let outcome = match tokio::time::timeout_at(give_up_at, worker.call()).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => CallOutcome::request_failed(
                0,
                format!("no answer {IN_FLIGHT_GRACE:?} after the end of the run"),
            ),
        };
        let answered = Instant::now();
        accepted_so_far.fetch_add(outcome.succeeded, Ordering::Relaxed);
        if tally.first_error.is_none() {
            tally.first_error = outcome.error;
        }
        if !window.contains(answered) {
            continue;
        }
        tally.requests += 1;
        tally.succeeded += outcome.succeeded;
        tally.failed += outcome.failed;
        if outcome.request_failed {
            tally.failed_requests += 1;
        } else {
            let micros = answered.duration_since(sent).as_micros();
            tally
                .latencies_micros
                .push(u32::try_from(micros).unwrap_or(u32::MAX));
        }
    }
    tally
}

/// A bar over the whole run, in milliseconds, on stderr (hidden when it is not a terminal).
fn progress_bar(label: &str, shape: LoadShape) -> ProgressBar {
    let total = shape.warmup + shape.duration;
    let bar = ProgressBar::new(total.as_millis() as u64);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>9} [{bar:30}] {msg}")
            .expect("literal progress template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_owned());
    bar
}

/// Moves `bar` along with time and shows the phase and the current rate of accepted
/// operations, until aborted.
async fn show_progress(
    bar: ProgressBar,
    started: Instant,
    shape: LoadShape,
    accepted_so_far: Arc<AtomicU64>,
) {
    let total = shape.warmup + shape.duration;
    let mut ticker = tokio::time::interval(PROGRESS_TICK);
    let mut last = (started, 0u64);
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let accepted = accepted_so_far.load(Ordering::Relaxed);
        let since_last = now.duration_since(last.0).as_secs_f64();
        if since_last > 0.0 {
            let rate = (accepted - last.1) as f64 / since_last;
            let elapsed = now.duration_since(started).min(total);
            let phase = if elapsed < shape.warmup {
                "warmup"
            } else {
                "measuring"
            };
            bar.set_message(format!(
                "{phase} {:.0}s/{}s, {rate:.0}/s",
                elapsed.as_secs_f64(),
                total.as_secs()
            ));
            bar.set_position(elapsed.as_millis() as u64);
        }
        last = (now, accepted);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles follow the nearest-rank definition, and an empty run has none.
    #[test]
    fn nearest_rank_percentiles() {
        let mut micros: Vec<u32> = (1..=100).rev().map(|ms| ms * 1_000).collect();
        let summary = LatencySummary::from_micros(&mut micros);
        assert_eq!(summary.p50_ms, Some(50.0));
        assert_eq!(summary.p99_ms, Some(99.0));
        let mut one = vec![1_500];
        assert_eq!(LatencySummary::from_micros(&mut one).p99_ms, Some(1.5));
        let empty = LatencySummary::from_micros(&mut []);
        assert_eq!(empty.p50_ms, None);
    }
}
