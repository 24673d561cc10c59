//! The subscriber: a durable queue bound with topic patterns, a typed handler, bounded
//! prefetch, acks after success, and a dead-letter exchange after repeated failures.

use async_trait::async_trait;
use factum::projection::catch_panic;
use factum::store::TopicPattern;
use factum::HandlerError;
use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, Connection, Consumer, ExchangeKind};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::acks::{bounded, Acks};
use crate::connect::connect;
use crate::error::{is_precondition_failed, BusError};
use crate::message::{headers, BusEvent};
use crate::subscriber_config::SubscriberConfig;
use factum::backoff::Backoff;

/// Handles the events a [`Subscriber`] receives, one at a time, in queue order.
///
/// ```
/// use factum::HandlerError;
/// use factum_rabbitmq::{BusEvent, MessageHandler};
///
/// struct Mailer;
///
/// #[async_trait::async_trait]
/// impl MessageHandler for Mailer {
///     async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError> {
///         // event.event_id is the idempotency key: a message can come more than once.
///         let _ = event;
///         Ok(())
///     }
/// }
/// ```
#[async_trait]
pub trait MessageHandler: Send + 'static {
    /// Handles one event. An error or a panic is a failure: the event is tried again
    /// (up to the subscriber's `max_attempts`), then dead-lettered.
    async fn handle(&mut self, event: &BusEvent) -> Result<(), HandlerError>;
}

fn short(field: &'static str, value: &str) -> Result<ShortString, BusError> {
    if value.is_empty() {
        return Err(BusError::InvalidConfig { field, reason: "must not be empty".into() });
    }
    ShortString::try_new(value).map_err(|e| BusError::InvalidConfig { field, reason: e.to_string() })
}

/// The subscriber's connection: a consuming channel and a confirm channel for dead letters.
struct Link {
    connection: Connection,
    consumer: Consumer,
    /// Kept open for the consumer's lifetime.
    _channel: Channel,
    dead_letters: Channel,
}

fn declare_error(what: &'static str, name: &str, e: lapin::Error) -> BusError {
    match (is_precondition_failed(&e), what) {
        (true, "exchange") => BusError::ExchangeMismatch { exchange: name.to_owned(), reason: e.to_string() },
        (true, _) => BusError::QueueMismatch { queue: name.to_owned(), reason: e.to_string() },
        (false, _) => BusError::Amqp(e),
    }
}

impl Link {
    /// Connects and declares the topology: the exchange, the queue and its bindings,
    /// the dead-letter exchange and queue; then starts consuming.
    async fn open(c: &SubscriberConfig) -> Result<Link, BusError> {
        let connection = connect(&c.url, &format!("factum subscriber {}", c.queue)).await?;
        let channel = connection.create_channel().await.map_err(BusError::Amqp)?;
        let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
        let exchange = short("exchange", &c.exchange)?;
        let queue = short("queue", &c.queue)?;
        let dlx = short("dead-letter exchange", &c.dead_letter_exchange)?;
        let dlq = short("dead-letter queue", &c.dead_letter_queue)?;
        channel
            .exchange_declare(exchange.clone(), ExchangeKind::Topic, durable, FieldTable::default())
            .await
            .map_err(|e| declare_error("exchange", &c.exchange, e))?;
        channel
            .exchange_declare(dlx.clone(), ExchangeKind::Fanout, durable, FieldTable::default())
            .await
            .map_err(|e| declare_error("exchange", &c.dead_letter_exchange, e))?;
        let mut args = FieldTable::default();
        if c.quorum {
            args.insert("x-queue-type".into(), AMQPValue::LongString(LongString::from("quorum")));
        }
        let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel
            .queue_declare(dlq.clone(), options, args.clone())
            .await
            .map_err(|e| declare_error("queue", &c.dead_letter_queue, e))?;
        channel
            .queue_bind(dlq, dlx, "".into(), QueueBindOptions::default(), FieldTable::default())
            .await
            .map_err(BusError::Amqp)?;
        channel
            .queue_declare(queue.clone(), options, args)
            .await
            .map_err(|e| declare_error("queue", &c.queue, e))?;
        for pattern in &c.bindings {
            let key = short("binding", pattern)?;
            channel
                .queue_bind(
                    queue.clone(),
                    exchange.clone(),
                    key,
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(BusError::Amqp)?;
        }
        channel.basic_qos(c.prefetch, BasicQosOptions::default()).await.map_err(BusError::Amqp)?;
        let consumer = channel
            .basic_consume(queue, "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await
            .map_err(BusError::Amqp)?;
        let dead_letters = connection.create_channel().await.map_err(BusError::Amqp)?;
        dead_letters.confirm_select(ConfirmSelectOptions::default()).await.map_err(BusError::Amqp)?;
        Ok(Link { connection, consumer, _channel: channel, dead_letters })
    }
}

/// How often a subscriber that receives nothing looks at its connection's state.
const HEALTH_CHECK: std::time::Duration = std::time::Duration::from_millis(500);

/// Starts subscribers.
#[derive(Debug)]
pub struct Subscriber;

impl Subscriber {
    /// Checks the configuration, connects and declares the topology (a bad URL, refused
    /// credentials, an exchange of another type or a queue with other properties is an
    /// error here), then consumes in a task of its own until stopped. Later outages are
    /// waited out: it reconnects with backoff, and the broker delivers again what was
    /// not acked.
    pub async fn start<H: MessageHandler>(
        config: SubscriberConfig,
        handler: H,
    ) -> Result<SubscriberHandle, BusError> {
        for pattern in &config.bindings {
            TopicPattern::parse(pattern)
                .map_err(|e| BusError::InvalidConfig { field: "bindings", reason: e.to_string() })?;
        }
        let link = Link::open(&config).await?;
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(config, handler, link, stopped));
        Ok(SubscriberHandle { stop, task })
    }
}

/// A running subscriber.
#[derive(Debug)]
pub struct SubscriberHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl SubscriberHandle {
    /// Whether the subscriber's task still runs (a handler's panic does not end it).
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Stops after the message being handled, and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run<H: MessageHandler>(
    config: SubscriberConfig,
    mut handler: H,
    link: Link,
    mut stopped: watch::Receiver<bool>,
) {
    let mut link = Some(link);
    let mut backoff = Backoff::new(config.reconnect_initial, config.reconnect_max);
    let mut acks = Acks::new(config.prefetch);
    // A connection that dies without closing may leave the consumer waiting for good:
    // its state is looked at while no message comes.
    let mut health = tokio::time::interval(HEALTH_CHECK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(current) = link.as_mut() else {
            acks.forget();
            tokio::select! {
                _ = stopped.changed() => return,
                opened = tokio::time::timeout(config.connect_timeout, Link::open(&config)) => match opened
                    .unwrap_or_else(|_| Err(BusError::Unreachable { url: crate::error::redact(&config.url), reason: "connect timed out".into() }))
                {
                    Ok(l) => {
                        tracing::info!(queue = %config.queue, "subscriber connected again");
                        config.metrics.reconnected("subscriber", &config.queue);
                        backoff.reset();
                        link = Some(l);
                    }
                    Err(e) => {
                        let delay = backoff.next_delay();
                        tracing::warn!(queue = %config.queue, error = %e, ?delay, "broker unavailable; retrying");
                        tokio::select! {
                            _ = stopped.changed() => return,
                            () = tokio::time::sleep(delay) => {}
                        }
                    }
                },
            }
            continue;
        };
        let next = tokio::select! {
            biased;
            _ = stopped.changed() => {
                let _ = acks.send().await;
                return;
            }
            next = current.consumer.next() => next,
            _ = health.tick() => {
                if !current.connection.status().connected() {
                    tracing::warn!(queue = %config.queue, "subscriber connection lost");
                    link = None;
                }
                continue;
            }
            // No message is waiting: send the acks held back.
            () = std::future::ready(()), if acks.holding() => {
                if let Err(e) = acks.send().await {
                    tracing::warn!(queue = %config.queue, error = %e, "lost the connection while acking");
                    link = None;
                }
                continue;
            }
        };
        match next {
            Some(Ok(delivery)) => {
                if let Err(e) = process(&config, &mut handler, current, &mut acks, delivery).await {
                    tracing::warn!(queue = %config.queue, error = %e, "lost the connection while acking");
                    link = None;
                }
            }
            Some(Err(e)) => {
                tracing::warn!(queue = %config.queue, error = %e, "subscriber connection lost");
                link = None;
            }
            None => {
                tracing::warn!(queue = %config.queue, "consumer cancelled by the broker");
                link = None;
            }
        }
    }
}

/// Handles one delivery: decode, try the handler up to `max_attempts` times, ack (held
/// back in `acks`), or dead-letter. Errors only when the connection fails (the broker
/// redelivers).
async fn process<H: MessageHandler>(
    config: &SubscriberConfig,
    handler: &mut H,
    link: &Link,
    acks: &mut Acks,
    delivery: Delivery,
) -> Result<(), lapin::Error> {
    config.metrics.received(&config.queue);
    let decoded = BusEvent::from_parts(
        delivery.routing_key.as_str(),
        &delivery.properties,
        &delivery.data,
        delivery.redelivered,
    );
    let event = match decoded {
        Ok(event) => event,
        Err(e) => {
            acks.send().await?;
            return dead_letter(config, link, delivery, &format!("undecodable: {e}"), 0).await;
        }
    };
    let span = tracing::info_span!(
        "factum.rabbitmq.receive",
        queue = %config.queue,
        event_id = %event.event_id,
        event_type = %event.event_type,
        redelivered = event.redelivered,
    );
    factum::trace::continue_trace(&span, event.traceparent.as_ref(), event.tracestate.as_ref());
    let mut backoff = Backoff::new(config.retry_initial, config.retry_max);
    let mut attempt = 1;
    loop {
        match catch_panic(handler.handle(&event)).instrument(span.clone()).await {
            Ok(()) => {
                config.metrics.handled(&config.queue, "ok");
                return acks.handled(delivery.acker).await;
            }
            Err(e) => {
                config.metrics.handled(&config.queue, "failed");
                // The messages handled before this one are not held back while it is retried.
                acks.send().await?;
                if attempt >= config.max_attempts {
                    tracing::error!(queue = %config.queue, event_id = %event.event_id, attempt, error = %e, "handler failed; dead-lettering");
                    return dead_letter(config, link, delivery, &e.to_string(), attempt).await;
                }
                let delay = backoff.next_delay();
                tracing::warn!(queue = %config.queue, event_id = %event.event_id, attempt, error = %e, ?delay, "handler failed; retrying");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// Publishes the message to the dead-letter exchange with the reason in its headers,
/// waits for the confirm, then acks the original. If the dead-letter exchange refuses
/// it, the original is requeued, and the broker delivers it again.
async fn dead_letter(
    config: &SubscriberConfig,
    link: &Link,
    delivery: Delivery,
    reason: &str,
    attempts: u32,
) -> Result<(), lapin::Error> {
    let mut table = delivery.properties.headers().clone().unwrap_or_default();
    let reason: String = reason.chars().take(4000).collect();
    table.insert(headers::DEAD_LETTER_REASON.into(), AMQPValue::LongString(LongString::from(reason)));
    table.insert(headers::DEAD_LETTER_ATTEMPTS.into(), AMQPValue::LongLongInt(i64::from(attempts)));
    table.insert(
        headers::DEAD_LETTER_QUEUE.into(),
        AMQPValue::LongString(LongString::from(config.queue.as_str())),
    );
    let properties = delivery.properties.clone().with_headers(table);
    let confirm = bounded(async {
        link.dead_letters
            .basic_publish(
                config.dead_letter_exchange.as_str().into(),
                delivery.routing_key.clone(),
                BasicPublishOptions::default(),
                &delivery.data,
                properties,
            )
            .await?
            .await
    })
    .await?;
    if confirm.is_ack() {
        config.metrics.handled(&config.queue, "dead_lettered");
        bounded(delivery.ack(BasicAckOptions::default())).await.map(drop)
    } else {
        tracing::error!(queue = %config.queue, "dead-letter exchange refused the message; requeueing it");
        bounded(delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }))
            .await
            .map(drop)
    }
}
