//! One shared `LISTEN` connection per store, turning notifications into wake-ups.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

fn bump(wake: &watch::Sender<u64>) {
    wake.send_modify(|n| *n = n.wrapping_add(1));
}

/// Listens on `channel` until no subscriber is left, reconnecting after failures. After
/// every (re)connection it wakes all subscribers, since notifications may have been
/// missed while it was away.
pub(crate) async fn run(pool: PgPool, channel: String, wake: Arc<watch::Sender<u64>>) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(&channel).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = tokio::select! {
            () = wake.closed() => return,
            l = connected => match l {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(error = %e, channel, "cannot LISTEN; subscribers poll until it can");
                    tokio::select! {
                        () = wake.closed() => return,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            }
        };
        bump(&wake);
        loop {
            tokio::select! {
                () = wake.closed() => return,
                n = listener.recv() => match n {
                    Ok(_) => bump(&wake),
                    Err(e) => {
                        tracing::warn!(error = %e, channel, "LISTEN connection failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}
