//! The typed event stream of a run. Events carry no secret values.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::error::ErrorKind;
use crate::resource::ResourceId;
use crate::verify::{CheckStatus, Part};

/// Something that happened during a run.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "event")]
pub enum Event {
    /// A run began.
    RunStarted {
        /// Installation.
        installation: String,
        /// `apply` or `destroy`.
        mode: String,
        /// Steps that will call the cloud.
        steps: usize,
    },
    /// A step began.
    StepStarted {
        /// Resource.
        resource: ResourceId,
        /// `create`, `update`, `replace`, `await` or `delete`.
        action: String,
    },
    /// A long-running operation reported progress.
    Progress {
        /// Resource.
        resource: ResourceId,
        /// Operation id.
        operation: String,
        /// Percent, if known.
        percent: Option<u8>,
        /// Status, if any.
        message: Option<String>,
    },
    /// A call failed with a retryable error and will be tried again.
    Retrying {
        /// Resource.
        resource: ResourceId,
        /// The error class.
        kind: ErrorKind,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// The delay before the next attempt.
        #[serde(with = "millis")]
        delay: Duration,
        /// The error message.
        message: String,
    },
    /// A step finished.
    StepDone {
        /// Resource.
        resource: ResourceId,
        /// The action.
        action: String,
        /// Time it took.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
    /// A step failed for good.
    StepFailed {
        /// Resource.
        resource: ResourceId,
        /// The error class.
        kind: ErrorKind,
        /// The error with its chain.
        message: String,
    },
    /// A step was not run (a dependency failed, or the run was cancelled).
    StepSkipped {
        /// Resource.
        resource: ResourceId,
        /// Why.
        reason: String,
    },
    /// `verify` finished one check (the summary never holds a secret value).
    Checked {
        /// The check's stable id (`database.connect`).
        id: String,
        /// The part it looks at.
        part: Part,
        /// Pass, fail or skipped.
        status: CheckStatus,
        /// What was found, in one line.
        summary: String,
    },
    /// `verify` ended.
    Verified {
        /// Installation.
        installation: String,
        /// True when no check failed.
        ok: bool,
        /// Checks that passed.
        passed: usize,
        /// Checks that failed.
        failed: usize,
        /// Checks that did not run.
        skipped: usize,
        /// Total time.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
    /// The run ended.
    RunFinished {
        /// Whether every step succeeded.
        success: bool,
        /// Total time.
        #[serde(with = "millis")]
        elapsed: Duration,
    },
}

mod millis {
    use serde::Serializer;
    use std::time::Duration;
    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().min(u128::from(u64::MAX)) as u64)
    }
}

/// Receives events. Called synchronously from the engine: keep it quick.
pub type EventSink = Arc<dyn Fn(&Event) + Send + Sync>;

/// A sink and a stream of its events (unbounded; the stream ends when the engine
/// holding the sink is dropped).
pub fn channel() -> (EventSink, futures::channel::mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let sink: EventSink = Arc::new(move |e: &Event| {
        let _ = tx.unbounded_send(e.clone());
    });
    (sink, rx)
}
