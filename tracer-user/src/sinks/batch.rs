//! Span batches, and the way their vectors come back to the pipeline.
//!
//! Sinks run on their own threads. A batch dropped there frees every span's
//! allocations on a thread that did not make them: glibc keeps freed
//! chunks in the freeing thread's cache, so the pipeline's next allocations
//! all take the slow path (measured: malloc was 11% of the pipeline
//! thread). So the sink that lets go of a batch last sends it home, and the
//! pipeline drops its spans there and gathers the next batch in its vector.
//! Each span's attribute vector is kept there too, emptied, for the parsers'
//! next exchanges.

use std::{
    ops::Deref,
    sync::{mpsc, Arc},
};

use crate::{protocols::SpareAttributes, spans::Span};

/// A batch of spans shared by every sink.
pub type SpanBatch = Arc<Batch>;

/// Spent batches waiting to be reused; beyond this many they are dropped
/// where they are.
const SPARE_VECTORS: usize = 4;

/// The spans of one batch; derefs to them.
#[derive(Debug)]
pub struct Batch {
    spans: Vec<Span>,
    home: Option<mpsc::SyncSender<Vec<Span>>>,
}

impl Batch {
    /// A batch that is simply dropped when done with (tests, tools).
    pub fn new(spans: Vec<Span>) -> SpanBatch {
        Arc::new(Batch { spans, home: None })
    }
}

impl Deref for Batch {
    type Target = [Span];

    fn deref(&self) -> &[Span] {
        &self.spans
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // A full return queue or a gone pipeline: dropped here instead.
            let _ = home.try_send(std::mem::take(&mut self.spans));
        }
    }
}

/// The pipeline's end: makes batches and takes their vectors back.
#[derive(Debug)]
pub struct BatchRecycler {
    home: mpsc::SyncSender<Vec<Span>>,
    returned: mpsc::Receiver<Vec<Span>>,
}

impl Default for BatchRecycler {
    fn default() -> Self {
        let (home, returned) = mpsc::sync_channel(SPARE_VECTORS);
        BatchRecycler { home, returned }
    }
}

impl BatchRecycler {
    /// `spans` as a batch whose vector comes back here when done with.
    pub fn batch(&self, spans: Vec<Span>) -> SpanBatch {
        Arc::new(Batch {
            spans,
            home: Some(self.home.clone()),
        })
    }

    /// An empty vector to gather the next batch in: a returned one (its
    /// spans dropped on this thread, their attribute vectors given to
    /// `spare`) if any has come back, else a new one with room for
    /// `capacity`.
    pub fn next_vector(&self, capacity: usize, spare: &mut SpareAttributes) -> Vec<Span> {
        let mut next = None;
        // Every returned one is emptied here; the last is kept.
        while let Ok(mut spans) = self.returned.try_recv() {
            for span in &mut spans {
                spare.give_back(std::mem::take(&mut span.attributes));
            }
            spans.clear();
            next = Some(spans);
        }
        next.unwrap_or_else(|| Vec::with_capacity(capacity))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::json::tests::sample_span;

    #[test]
    fn the_last_holder_sends_the_vector_home_to_be_reused() {
        let recycler = BatchRecycler::default();
        let mut spans = Vec::with_capacity(100);
        spans.push(sample_span());
        spans.push(sample_span());
        let batch = recycler.batch(spans);
        let other_sink = Arc::clone(&batch);
        assert_eq!(batch.len(), 2);
        drop(batch);
        let mut spare = SpareAttributes::default();
        // Still held by a sink: not back yet.
        assert_eq!(recycler.next_vector(7, &mut spare).capacity(), 7);
        assert!(spare.is_empty());
        drop(other_sink);
        let reused = recycler.next_vector(7, &mut spare);
        assert!(reused.is_empty());
        assert_eq!(reused.capacity(), 100);
        assert_eq!(spare.len(), 2, "both spans' attribute vectors kept");
    }

    #[test]
    fn a_batch_whose_pipeline_is_gone_is_just_dropped() {
        let recycler = BatchRecycler::default();
        let batch = recycler.batch(vec![sample_span()]);
        drop(recycler);
        drop(batch);
        let plain = Batch::new(vec![sample_span()]);
        assert_eq!(plain.len(), 1);
    }
}
