//! Running work beside an actor: a task that ends with its owner, and the message of a
//! caught panic.

use std::any::Any;

use tokio::task::JoinHandle;

/// Aborts its task when dropped.
///
/// An actor's state owns its helper tasks through this, so that they end however the
/// actor ends (`post_stop` does not run after a panic or a kill).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use factum::task::AbortOnDrop;
///
/// let ticker = AbortOnDrop::new(tokio::spawn(async {
///     loop {
///         tokio::time::sleep(std::time::Duration::from_secs(1)).await;
///     }
/// }));
/// drop(ticker); // the task is aborted
/// # }
/// ```
#[derive(Debug)]
pub struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> AbortOnDrop<T> {
    /// Owns `task`.
    pub fn new(task: JoinHandle<T>) -> Self {
        AbortOnDrop(task)
    }

    /// The task's handle, to await its result.
    pub fn handle(&mut self) -> &mut JoinHandle<T> {
        &mut self.0
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The message of a caught panic's payload (a `&str` or a `String`, as `panic!` makes).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a non-string panic payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_messages() {
        let s: Box<dyn Any + Send> = Box::new("boom");
        let owned: Box<dyn Any + Send> = Box::new(String::from("bang"));
        let other: Box<dyn Any + Send> = Box::new(42u8);
        assert_eq!(panic_message(s.as_ref()), "boom");
        assert_eq!(panic_message(owned.as_ref()), "bang");
        assert_eq!(panic_message(other.as_ref()), "a non-string panic payload");
    }
}
