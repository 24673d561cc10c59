//! Getting messages confirmed: the connection, publishing with confirms, waiting for
//! them in order, and reconnecting (publishing ahead meanwhile: `ahead`).

use std::collections::VecDeque;
use std::time::Duration;

use factum::store::Checkpoint;
use factum::RecordedEvent;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Channel, Confirmation, Connection, ExchangeKind, PublisherConfirm};
use tracing::Instrument;

use crate::config::PublisherConfig;
use crate::connect::{connect, is_transient};
use crate::error::{is_precondition_failed, BusError};
use crate::message::encode;
use crate::publisher::Publisher;

/// The target of the trace events that stamp each message's stages (read, published,
/// confirmed), for the benchmark's breakdown; nothing is recorded unless a subscriber
/// enables it.
pub(crate) const STAGES: &str = "factum_rabbitmq::stages";

/// A connection and its confirm-mode channel.
pub(crate) struct Link {
    pub(crate) connection: Connection,
    channel: Channel,
}

impl Link {
    /// Connects, declares the exchange and turns confirms on.
    pub(crate) async fn open(config: &PublisherConfig, exchange: &ShortString) -> Result<Link, BusError> {
        let connection = connect(&config.url, &format!("factum publisher {}", config.name)).await?;
        let channel = connection.create_channel().await.map_err(BusError::Amqp)?;
        let options = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        channel
            .exchange_declare(exchange.clone(), ExchangeKind::Topic, options, FieldTable::default())
            .await
            .map_err(|e| {
                if is_precondition_failed(&e) {
                    BusError::ExchangeMismatch { exchange: exchange.to_string(), reason: e.to_string() }
                } else {
                    BusError::Amqp(e)
                }
            })?;
        channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(BusError::Amqp)?;
        Ok(Link { connection, channel })
    }
}

/// A message sent ahead of its batch and not yet confirmed, with its event: the batch
/// that takes it is the event as read ahead, not read again.
pub(crate) struct InFlight {
    pub(crate) event: RecordedEvent,
    pub(crate) confirm: PublisherConfirm,
}

/// Confirms nobody waits for any more, awaited in the background so that the channel
/// does not keep them.
pub(crate) fn abandon(confirms: impl IntoIterator<Item = PublisherConfirm>) {
    let confirms: Vec<PublisherConfirm> = confirms.into_iter().collect();
    if !confirms.is_empty() {
        tokio::spawn(async move {
            for c in confirms {
                let _ = tokio::time::timeout(Duration::from_secs(60), c).await;
            }
        });
    }
}

/// How waiting for a batch's confirms ended.
pub(crate) enum Outcome {
    /// All confirmed.
    Confirmed,
    /// The broker refused the event at this index (or it cannot be encoded); all
    /// before it are confirmed.
    Refused(usize, String),
}

/// Why a publish or a confirm did not happen.
pub(crate) enum Wait {
    Refused(String),
    Broken(String),
}

impl Publisher {
    /// The connection, opened again (with backoff) if it was lost. Waits as long as the
    /// broker is away.
    pub(crate) async fn ensure_link(&mut self) {
        if self.link.as_ref().is_some_and(|l| l.connection.status().connected()) {
            return;
        }
        self.drop_link().await;
        loop {
            let opened =
                tokio::time::timeout(self.config.connect_timeout, Link::open(&self.config, &self.exchange))
                    .await
                    .unwrap_or_else(|_| {
                        Err(BusError::Unreachable {
                            url: crate::error::redact(&self.config.url),
                            reason: "connect timed out".into(),
                        })
                    });
            match opened {
                Ok(link) => {
                    tracing::info!(publisher = %self.config.name, "connected to the broker again");
                    self.config.metrics.reconnected("publisher", &self.config.name);
                    self.backoff.reset();
                    self.link = Some(link);
                    return;
                }
                Err(e) => {
                    let delay = self.backoff.next_delay();
                    if is_transient(&e) {
                        tracing::warn!(publisher = %self.config.name, error = %e, ?delay, "broker unavailable; retrying");
                    } else {
                        tracing::error!(publisher = %self.config.name, error = %e, ?delay, "broker refuses the publisher; retrying");
                    }
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Gives the connection up (after a failure or a confirm timeout), and with it what
    /// was published ahead.
    async fn drop_link(&mut self) {
        self.ahead.discard(None);
        if let Some(link) = self.link.take() {
            let close = link.connection.close(320, "factum publisher reconnecting".into());
            let _ = tokio::time::timeout(Duration::from_secs(1), close).await;
        }
    }

    /// Publishes one event on the current connection.
    pub(crate) async fn publish(&self, event: &RecordedEvent) -> Result<PublisherConfirm, Wait> {
        let span = send_span(&self.config.name, event);
        let trace = factum::trace::of(&span)
            .or_else(|| event.metadata.traceparent.map(|p| (p, event.metadata.tracestate.clone())));
        let message = encode(event, trace.as_ref()).map_err(Wait::Refused)?;
        let link = self.link.as_ref().ok_or_else(|| Wait::Broken("no connection".into()))?;
        let options =
            BasicPublishOptions { mandatory: self.config.mandatory, ..BasicPublishOptions::default() };
        let publish = link
            .channel
            .basic_publish(
                self.exchange.clone(),
                message.routing_key,
                options,
                &message.body,
                message.properties,
            )
            .instrument(span);
        // A connection that died without lapin noticing can leave the send waiting: it is
        // bounded like a confirm (and, like a confirm, not while the broker has blocked
        // the connection), and the connection is given up after it.
        let mut publish = std::pin::pin!(publish);
        let confirm = loop {
            match tokio::time::timeout(self.config.confirm_timeout, &mut publish).await {
                Ok(sent) => break sent.map_err(|e| Wait::Broken(e.to_string()))?,
                Err(_) if link.connection.status().blocked() => {
                    tracing::warn!(publisher = %self.config.name, "connection blocked by the broker; waiting");
                }
                Err(_) => {
                    return Err(Wait::Broken(format!("not sent within {:?}", self.config.confirm_timeout)));
                }
            }
        };
        self.config.metrics.published.get_or_create(&self.config.metrics.publisher(&self.config.name)).inc();
        tracing::trace!(target: STAGES, stage = "published", position = event.position.0);
        Ok(confirm)
    }

    /// Waits for one confirm, reading the log ahead meanwhile when it grows (`ahead`).
    /// No time limit while the broker has blocked the connection.
    async fn confirm(&mut self, mut confirm: PublisherConfirm, pipelined: bool) -> Result<(), Wait> {
        let Some(status) = self.link.as_ref().map(|l| l.connection.status().clone()) else {
            return Err(Wait::Broken("no connection".into()));
        };
        let mut deadline = tokio::time::Instant::now() + self.config.confirm_timeout;
        loop {
            let read_ahead = pipelined && self.may_read_ahead();
            let listen = read_ahead && self.ahead.listening;
            let read_at = self.ahead.next_read();
            tokio::select! {
                biased;
                result = &mut confirm => return self.confirmation(result),
                () = tokio::time::sleep_until(deadline) => {
                    if !status.blocked() {
                        return Err(Wait::Broken(format!("no confirm within {:?}", self.config.confirm_timeout)));
                    }
                    tracing::warn!(publisher = %self.config.name, "connection blocked by the broker; waiting");
                    deadline = tokio::time::Instant::now() + self.config.confirm_timeout;
                }
                grew = self.ahead.signal.changed(), if listen => self.ahead.grew(grew.is_ok()),
                () = tokio::time::sleep_until(read_at), if read_ahead => self.read_ahead().await,
            }
        }
    }

    /// What a confirm says, counted in the metrics.
    fn confirmation(&self, result: lapin::Result<Confirmation>) -> Result<(), Wait> {
        match result {
            Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                let labels = self.config.metrics.publisher(&self.config.name);
                self.config.metrics.confirmed.get_or_create(&labels).inc();
                Ok(())
            }
            Ok(Confirmation::Ack(Some(returned))) => {
                self.config.metrics.failed(&self.config.name, "returned");
                Err(Wait::Refused(format!(
                    "unroutable: no queue bound for routing key {:?} ({} {})",
                    returned.delivery.routing_key.as_str(),
                    returned.reply_code,
                    returned.reply_text.as_str()
                )))
            }
            Ok(Confirmation::Nack(_)) => {
                self.config.metrics.failed(&self.config.name, "nacked");
                Err(Wait::Refused("nacked by the broker".into()))
            }
            Err(e) => Err(Wait::Broken(e.to_string())),
        }
    }

    /// Gets every event of `events` confirmed, in order, reconnecting and publishing
    /// again as often as needed. With `pipelined`, what was published ahead is used for
    /// the batch's first events, and the log is read ahead while confirms are awaited.
    pub(crate) async fn deliver(
        &mut self,
        events: &[RecordedEvent],
        to: Checkpoint,
        pipelined: bool,
    ) -> Outcome {
        let mut pending: VecDeque<(usize, PublisherConfirm)> = VecDeque::with_capacity(events.len());
        let mut next = 0;
        if pipelined {
            while next < events.len()
                && self.ahead.sent.front().is_some_and(|f| f.event.event_id == events[next].event_id)
            {
                let Some(sent) = self.ahead.sent.pop_front() else { break };
                pending.push_back((next, sent.confirm));
                next += 1;
            }
            if next < events.len() || self.ahead.after.is_none_or(|a| a < to) {
                // What was read ahead is not what the batch holds: start over after it.
                self.ahead.discard(Some(to));
            }
            // What is left of it was read from the batch's end on.
            self.ahead.from = Some(to);
        }
        // The first event not yet confirmed: on a lost connection, everything from it on
        // is published again.
        let mut first_unconfirmed = 0;
        loop {
            self.ensure_link().await;
            let mut broken = None;
            while next < events.len() {
                match self.publish(&events[next]).await {
                    Ok(confirm) => pending.push_back((next, confirm)),
                    Err(Wait::Refused(reason)) => {
                        broken = Some(Wait::Refused(reason));
                        break;
                    }
                    Err(Wait::Broken(reason)) => {
                        broken = Some(Wait::Broken(reason));
                        break;
                    }
                }
                next += 1;
            }
            while let Some((index, confirm)) = pending.pop_front() {
                match self.confirm(confirm, pipelined).await {
                    Ok(()) => {
                        tracing::trace!(target: STAGES, stage = "confirmed", position = events[index].position.0);
                        first_unconfirmed = index + 1;
                    }
                    Err(Wait::Refused(reason)) => {
                        abandon(pending.drain(..).map(|(_, c)| c));
                        self.ahead.discard(None);
                        return Outcome::Refused(index, reason);
                    }
                    Err(Wait::Broken(reason)) => {
                        broken = Some(Wait::Broken(reason));
                        break;
                    }
                }
            }
            match broken {
                None => return Outcome::Confirmed,
                // An event that cannot be encoded, after all before it were confirmed.
                Some(Wait::Refused(reason)) if first_unconfirmed == next => {
                    return Outcome::Refused(next, reason)
                }
                Some(Wait::Refused(_)) | Some(Wait::Broken(_)) => {
                    if let Some(Wait::Broken(reason)) = &broken {
                        tracing::warn!(
                            publisher = %self.config.name,
                            error = %reason,
                            unconfirmed = events.len() - first_unconfirmed,
                            "connection lost; publishing the unconfirmed messages again"
                        );
                    }
                    abandon(pending.drain(..).map(|(_, c)| c));
                    self.drop_link().await;
                    next = first_unconfirmed;
                    if pipelined {
                        self.ahead.discard(Some(to));
                    }
                }
            }
        }
    }
}

/// The span of one message's publication, `factum.rabbitmq.send`: a child of the trace
/// context the event was stored with. `Span::none()` for an event with none, so that
/// untraced events cost nothing.
fn send_span(publisher: &str, event: &RecordedEvent) -> tracing::Span {
    if event.metadata.traceparent.is_none() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "factum.rabbitmq.send",
        publisher = %publisher,
        event_id = %event.event_id,
        position = event.position.0,
    );
    factum::trace::continue_from(&span, &event.metadata);
    span
}
