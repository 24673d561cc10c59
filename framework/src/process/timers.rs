//! The timer service of a process: in the instance that holds the process's timer lease,
//! fires each due timer once, through the instance that set it, then removes it.
//!
//! A timer fires as a step of its instance, recorded once under an id derived from the
//! timer's id; its row goes only after the step and its commands are done. A crash in
//! between fires it again, and the step is found recorded: the timer fires once. A
//! service that was down at a deadline fires the timer when it starts.

use std::sync::Arc;
use std::time::Duration;

use std::collections::HashMap;

use chrono::Utc;
use tokio::time::Instant;
use uuid::Uuid;

use super::input::{Fired, Input};
use super::manager::Core;
use super::Process;
use crate::backoff::Backoff;
use crate::store::{Lease, Timer};

/// How many due timers one look fetches.
const DUE_PAGE: usize = 100;

/// The timer lease's name: the process's name with `.timers`.
pub(crate) fn lease_name(process: &str) -> String {
    format!("{process}.timers")
}

/// Timers whose step failed, each left aside until its own backoff ends, so that they
/// never hold up the timers due after them.
#[derive(Default)]
struct Failing(HashMap<Uuid, (Instant, Backoff)>);

impl Failing {
    fn failed(&mut self, id: Uuid, poll: Duration) {
        let now = Instant::now();
        let entry =
            self.0.entry(id).or_insert_with(|| (now, Backoff::new(poll, Duration::from_secs(60).max(poll))));
        entry.0 = now + entry.1.next_delay();
    }

    fn waiting(&self, id: Uuid) -> bool {
        self.0.get(&id).is_some_and(|(at, _)| *at > Instant::now())
    }
}

/// Runs until aborted (when the process's projection is dropped).
pub(crate) async fn serve<P: Process>(core: Arc<Core<P>>, poll: Duration) {
    let mut lease: Option<Lease> = None;
    let mut backoff = Backoff::new(poll, Duration::from_secs(30).max(poll));
    let mut failing = Failing::default();
    loop {
        let mut delay = poll;
        if !lease.as_ref().is_some_and(Lease::is_held) {
            lease = match core.store().try_lease(&lease_name(P::NAME)).await {
                Ok(lease) => lease,
                Err(e) => {
                    tracing::warn!(process = P::NAME, error = %e, "cannot take the timer lease");
                    None
                }
            };
        }
        if lease.as_ref().is_some_and(Lease::is_held) {
            match fire_due(&core, &mut failing, poll).await {
                Ok(full) => {
                    backoff.reset();
                    if full {
                        delay = Duration::ZERO;
                    }
                }
                Err(()) => delay = backoff.next_delay(),
            }
        }
        tokio::time::sleep(delay).await;
    }
}

/// Fires the due timers of one page (past those left aside); `Ok(true)` if the page was
/// full (more may be due).
async fn fire_due<P: Process>(core: &Core<P>, failing: &mut Failing, poll: Duration) -> Result<bool, ()> {
    let limit = (DUE_PAGE + failing.0.len()).min(10_000);
    let due = match core.store().timers(P::NAME, Some(Utc::now()), limit).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(process = P::NAME, error = %e, "cannot read the due timers");
            return Err(());
        }
    };
    let mut failed = false;
    let mut fired = 0;
    let ready: Vec<&Timer> = due.iter().filter(|t| !failing.waiting(t.id)).collect();
    for timer in ready {
        fired += 1;
        let fired = Fired { name: timer.name.clone(), timer_id: timer.id, deadline: timer.deadline };
        let correlation = timer.stream.aggregate_id().to_owned();
        match core.step(correlation, Input::Timer(fired), timer.id, 0, Some(timer.id)).await {
            Ok(()) => {
                failing.0.remove(&timer.id);
                if let Err(e) = core.store().remove_timer(&timer.stream, timer.id).await {
                    tracing::warn!(process = P::NAME, stream = %timer.stream, error = %e, "cannot remove a fired timer");
                    failed = true;
                }
            }
            Err(e) => {
                tracing::warn!(process = P::NAME, stream = %timer.stream, timer = %timer.name, error = %e,
                    "a due timer did not fire; it is tried again after a backoff");
                failing.failed(timer.id, poll);
            }
        }
    }
    failing.0.retain(|id, _| due.iter().any(|t| t.id == *id));
    if failed {
        Err(())
    } else {
        Ok(due.len() == limit && fired > 0)
    }
}
