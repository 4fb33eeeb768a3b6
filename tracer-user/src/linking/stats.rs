//! What the linker did, for the run summary.

#[derive(Clone, Copy, Debug, Default)]
pub struct LinkStats {
    /// Spans not emitted the moment they were built.
    pub held: u64,
    /// Server spans emitted without bookkeeping: their caller is not traced
    /// and their process makes no calls, so they can have no parent and no
    /// child.
    pub unlinkable: u64,
    /// Spans given a parent.
    pub linked: u64,
    /// Trees emitted unlinked because their root's parent could still have
    /// come when the window ran out (or the span limit was reached).
    pub expired: u64,
    /// Of those, emitted early for `max_spans`.
    pub over_limit: u64,
    pub hold_ns_total: u64,
    pub hold_ns_max: u64,
}

impl LinkStats {
    /// Mean time a held span waited, in ms.
    pub fn hold_ms_mean(&self) -> f64 {
        if self.held == 0 {
            0.0
        } else {
            self.hold_ns_total as f64 / self.held as f64 / 1e6
        }
    }

    pub fn hold_ms_max(&self) -> f64 {
        self.hold_ns_max as f64 / 1e6
    }
}
