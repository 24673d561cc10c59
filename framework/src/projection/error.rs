//! What goes wrong in a projection: a handler's error, a sink's, and an operation's on a
//! running projection.

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;

use crate::store::StoreError;

/// What went wrong in a handler: any error, kept as its message and source.
///
/// Any `std::error::Error + Send + Sync` converts into it with `?`, and so do `String`
/// and `&str`. Like `anyhow::Error`, it does not implement `std::error::Error` itself
/// (that would conflict with the conversion from every error); [`as_error`](Self::as_error)
/// and [`into_error`](Self::into_error) give the error it holds, and the errors that carry
/// a `HandlerError` ([`SinkError`]) report it as their `source()`.
pub struct HandlerError(Box<dyn std::error::Error + Send + Sync>);

impl HandlerError {
    /// An error with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        HandlerError(message.to_string().into())
    }

    /// The underlying error.
    pub fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        &*self.0
    }

    /// The underlying error, owned.
    pub fn into_error(self) -> Box<dyn std::error::Error + Send + Sync> {
        self.0
    }
}

impl<E: Into<Box<dyn std::error::Error + Send + Sync>>> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(e.into())
    }
}

impl fmt::Display for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for HandlerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// Runs a handler's future, turning a panic into a [`HandlerError`]. Sinks run user code
/// through it, so that a panicking handler is a failure like any other.
pub async fn catch_panic<F>(f: F) -> Result<(), HandlerError>
where
    F: Future<Output = Result<(), HandlerError>>,
{
    AssertUnwindSafe(f).catch_unwind().await.unwrap_or_else(|panic| Err(panic_error(panic.as_ref())))
}

/// A panic's payload as a handler error.
pub(crate) fn panic_error(panic: &(dyn std::any::Any + Send)) -> HandlerError {
    HandlerError::msg(format_args!("handler panicked: {}", crate::task::panic_message(panic)))
}

/// Why a sink did not apply a batch.
#[derive(Debug)]
#[non_exhaustive]
pub enum SinkError {
    /// The handler failed on `events[index]`. If `prefix_committed`, the events before it
    /// were applied and the checkpoint moved to the last of them; otherwise nothing of
    /// the batch was kept.
    Handler {
        /// The failed event's index in the batch's events.
        index: usize,
        /// The handler's error (also this error's `source()`).
        error: HandlerError,
        /// Whether the events before `index` were kept.
        prefix_committed: bool,
    },
    /// The checkpoint was not at `from`: another instance moved it. Nothing was kept.
    Fenced,
    /// The store failed. Nothing was kept, or the batch was kept entirely.
    Store(StoreError),
}

impl From<StoreError> for SinkError {
    fn from(e: StoreError) -> Self {
        SinkError::Store(e)
    }
}

impl fmt::Display for SinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SinkError::Handler { index, error, .. } => write!(f, "handler failed on event {index}: {error}"),
            SinkError::Fenced => f.write_str("the checkpoint moved under this projection"),
            SinkError::Store(e) => write!(f, "store error: {e}"),
        }
    }
}

impl std::error::Error for SinkError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SinkError::Handler { error, .. } => Some(error.as_error()),
            SinkError::Fenced => None,
            SinkError::Store(e) => Some(e),
        }
    }
}

/// Why an operation on a running projection (a reset, a rebuild's start, a retry of its
/// recorded failures) failed. The supervisor reports it as a
/// [`SupervisorError`](crate::supervisor::SupervisorError).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// Another instance holds the projection's lease; this one stands by.
    #[error("projection {0:?} runs in another instance; this one stands by")]
    NotOwner(String),
    /// The projection's sink (its handler, or its checkpoint's fence) failed.
    #[error("projection sink failed: {0}")]
    Sink(#[source] SinkError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A projection in slices is rebuilt by declaring a new version, which is built
    /// beside the live one in all its slices (a rebuild in place or into a copy would
    /// have to stop every slice in every instance at once).
    #[error("a projection in slices is rebuilt by declaring a new version")]
    InSlices,
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("the mail server said no")]
    struct MailRefused;

    #[test]
    fn a_sink_error_keeps_the_handlers_error_as_its_source() {
        let e =
            SinkError::Handler { index: 2, error: HandlerError::from(MailRefused), prefix_committed: true };
        assert_eq!(e.to_string(), "handler failed on event 2: the mail server said no");
        let source = e.source().expect("a source");
        assert_eq!(source.to_string(), "the mail server said no");
        assert!(source.downcast_ref::<MailRefused>().is_some(), "the handler's own error type");
        let store = SinkError::from(StoreError::Corrupt("bad row".into()));
        assert!(store.source().is_some_and(|s| s.downcast_ref::<StoreError>().is_some()));
        assert!(SinkError::Fenced.source().is_none());
    }

    #[test]
    fn a_panic_is_a_handler_error_with_its_message() {
        let boxed: Box<dyn std::any::Any + Send> = Box::new("boom");
        assert_eq!(panic_error(boxed.as_ref()).to_string(), "handler panicked: boom");
        let boxed: Box<dyn std::any::Any + Send> = Box::new(String::from("bang"));
        assert_eq!(panic_error(boxed.as_ref()).into_error().to_string(), "handler panicked: bang");
    }
}
