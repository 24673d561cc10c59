//! The decisions of a process instance (pure, no store): what a repeated event, a stale
//! timer and a refusal do, through the testing kit.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use factum::process::{Decision, Fired, Input, Process, Received, Refusal, Subscription};
use factum::store::{GlobalPosition, StreamId};
use factum::testing::ProcessTest;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, factum::DomainEvent)]
enum Ev {
    Started,
    Poked,
}

/// Sets `t` on start; a poke re-arms it; a timer ends it; refusals are ignored by its
/// decision (and recorded all the same).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Flow {
    pokes: u32,
    refusals: u32,
}

impl Process for Flow {
    const NAME: &'static str = "flow";
    type Event = Ev;

    fn subscription() -> Subscription {
        Subscription::new()
    }
    fn correlate(_: &Received<Ev>) -> Result<Option<String>, String> {
        Ok(Some("x".into()))
    }
    fn handle(&self, input: &Input<Ev>) -> Decision {
        match input {
            Input::Event(e) if e.event == Ev::Started => {
                Decision::new().set_timer_after("t", Duration::from_secs(5))
            }
            Input::Event(_) => Decision::new().set_timer_after("t", Duration::from_secs(9)),
            Input::Timer(_) => Decision::new().end(),
            Input::Refused(_) => Decision::ignore(),
        }
    }
    fn apply(&mut self, input: &Input<Ev>) {
        match input {
            Input::Event(e) if e.event == Ev::Poked => self.pokes += 1,
            Input::Refused(_) => self.refusals += 1,
            _ => {}
        }
    }
}

fn event(ev: Ev, position: u64) -> Input<Ev> {
    let mut received = Received::new(StreamId::new("Thing", "x").unwrap(), ev);
    received.position = GlobalPosition(position);
    received.transaction = position;
    Input::Event(received)
}

#[test]
fn an_event_at_or_before_the_last_one_recorded_is_not_decided_again() {
    let outcome =
        ProcessTest::<Flow>::given([event(Ev::Started, 1), event(Ev::Poked, 5)]).when(event(Ev::Poked, 3));
    let outcome = outcome.then_ignores();
    assert_eq!(outcome.instance.state.pokes, 1);
    ProcessTest::<Flow>::given([event(Ev::Started, 1)]).when(event(Ev::Poked, 6)).then_sets_timers(&["t"]);
}

#[test]
fn a_timer_fires_only_as_the_instance_holds_it() {
    let given = || ProcessTest::<Flow>::given([event(Ev::Started, 1), event(Ev::Poked, 2)]);
    // The first setting of `t` was replaced by the poke's: its firing decides nothing.
    let stale = Fired { name: "t".into(), timer_id: Uuid::now_v7(), deadline: chrono::Utc::now() };
    given().when(Input::Timer(stale)).then_ignores();
    let outcome = given().when_timer("t").then_ends();
    assert!(outcome.instance.timers.is_empty() && outcome.instance.ended);
    // Fired once: the same firing again decides nothing.
    let fired = given().when_timer("t").step.unwrap().unwrap().input;
    ProcessTest::<Flow>::given([event(Ev::Started, 1), event(Ev::Poked, 2), fired.clone()])
        .when(fired)
        .then_ignores();
}

#[test]
fn a_refusal_is_recorded_even_when_the_decision_ignores_it() {
    let refusal = Refusal {
        command_id: Uuid::now_v7(),
        aggregate_type: "Thing".into(),
        aggregate_id: "x".into(),
        command: serde_json::json!({}),
        reason: "no".into(),
        at: chrono::Utc::now(),
    };
    let outcome = ProcessTest::<Flow>::given([event(Ev::Started, 1)]).when(Input::Refused(refusal.clone()));
    assert!(matches!(outcome.step, Ok(Some(_))), "recorded");
    assert_eq!(outcome.instance.state.refusals, 1);
    // Even by an ended instance.
    let ended = ProcessTest::<Flow>::given([event(Ev::Started, 1)]).when_timer("t").instance;
    assert!(ended.ended);
    let fired =
        ProcessTest::<Flow>::given([event(Ev::Started, 1)]).when_timer("t").step.unwrap().unwrap().input;
    let outcome = ProcessTest::<Flow>::given([event(Ev::Started, 1), fired]).when(Input::Refused(refusal));
    assert!(matches!(outcome.step, Ok(Some(ref s)) if s.decision.timers_set.is_empty()));
}
