//! A budget for per-client log lines (connected, disconnected, refused).
//!
//! A client connecting and closing in a loop would otherwise write thousands of lines a
//! second: journald's rate limit then drops real messages with them, and the SD card wears.
//! Within each [`WINDOW`] the first [`LINES_PER_WINDOW`] lines are written; the rest are
//! counted and summed up in one line when the window ends.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of one budget window.
pub const WINDOW: Duration = Duration::from_secs(10);
/// Per-client lines written per window; a normal dashboard reconnect costs two.
pub const LINES_PER_WINDOW: u32 = 20;

pub struct ClientLog {
    state: Mutex<Window>,
}

struct Window {
    started: Instant,
    lines: u32,
    suppressed: u64,
}

impl Default for ClientLog {
    fn default() -> Self {
        ClientLog {
            state: Mutex::new(Window {
                started: Instant::now(),
                lines: 0,
                suppressed: 0,
            }),
        }
    }
}

impl ClientLog {
    /// Whether one more per-client line may be written now; if not, it is counted.
    pub fn allow(&self) -> bool {
        let mut window = self.state.lock().unwrap_or_else(|e| e.into_inner());
        window.roll();
        if window.lines < LINES_PER_WINDOW {
            window.lines += 1;
            true
        } else {
            window.suppressed += 1;
            false
        }
    }

    /// Whether lines were suppressed whose summary is not written yet (a [`ClientLog::flush`]
    /// after the window ends writes it).
    pub fn pending(&self) -> bool {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .suppressed
            > 0
    }

    /// Writes the summary of a window that has ended with lines suppressed.
    pub fn flush(&self) {
        let mut window = self.state.lock().unwrap_or_else(|e| e.into_inner());
        window.roll();
    }
}

impl Window {
    fn roll(&mut self) {
        if self.started.elapsed() < WINDOW {
            return;
        }
        if self.suppressed > 0 {
            tracing::info!(
                "{} more client connect/disconnect/refusal lines in the last {:?} not logged",
                self.suppressed,
                self.started.elapsed()
            );
        }
        self.started = Instant::now();
        self.lines = 0;
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_beyond_the_budget_are_counted() {
        let log = ClientLog::default();
        let allowed = (0..1000).filter(|_| log.allow()).count();
        assert_eq!(allowed, LINES_PER_WINDOW as usize);
        let window = log.state.lock().unwrap();
        assert_eq!(window.suppressed, 1000 - u64::from(LINES_PER_WINDOW));
    }
}
