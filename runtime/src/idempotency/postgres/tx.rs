//! [`Tx`]: the extractor that hands an idempotent handler the transaction
//! in which jetflow inserted its claim.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use sqlx::{PgConnection, Postgres, Transaction};
use tokio::sync::{Mutex, OwnedMutexGuard};

use crate::handler::{Context, FromContext, HandlerError};

/// The open transaction of one claim, shared by the store and the handler.
pub(super) struct TxSlot(pub(super) Arc<Mutex<Option<Transaction<'static, Postgres>>>>);

/// The transaction jetflow opened for this delivery, with the claim row
/// already inserted: write the handler's rows through it, and they commit
/// together with the claim when the handler returns `Ok` (then jetflow
/// acks); an error or a panic rolls both back (then jetflow retries). Do
/// not commit it yourself.
///
/// Only for an `idempotent` handler (a compile error otherwise, spanned on
/// the argument) of an app whose store is a
/// [`PostgresStore`](super::PostgresStore) (with another store the
/// delivery is rejected with an error that says so).
///
/// ```no_run
/// use jetflow::prelude::*;
/// use jetflow::idempotency::Tx;
///
/// #[event(version = "v1", id = order_id)]
/// pub struct OrderPaid { pub order_id: String, pub cents: i64 }
///
/// #[handler(group = "ledger", idempotent)]
/// async fn book(o: OrderPaid, mut tx: Tx) -> Result<(), HandlerError> {
///     sqlx::query("INSERT INTO ledger (order_id, cents) VALUES ($1, $2)")
///         .bind(&o.order_id)
///         .bind(o.cents)
///         .execute(&mut *tx)
///         .await
///         .map_err(HandlerError::retry)?;
///     Ok(())
/// }
/// ```
pub struct Tx {
    guard: OwnedMutexGuard<Option<Transaction<'static, Postgres>>>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").finish_non_exhaustive()
    }
}

impl Deref for Tx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        self.guard.as_deref().expect("checked in from_context")
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.guard.as_deref_mut().expect("checked in from_context")
    }
}

impl FromContext for Tx {
    const NEEDS_CLAIM: bool = true;

    fn from_context(ctx: &Context) -> Result<Self, HandlerError> {
        let slot = ctx
            .claim()
            .and_then(|token| token.attachment::<TxSlot>())
            .ok_or_else(|| {
                HandlerError::reject(format!(
                    "handler `{}` takes `Tx`, which needs `#[handler(idempotent)]` and an app \
                     whose idempotency store is a PostgresStore",
                    ctx.handler()
                ))
            })?;
        let guard = slot.0.clone().try_lock_owned().map_err(|_| {
            HandlerError::reject("`Tx` is taken twice by one handler; take it once")
        })?;
        if guard.is_none() {
            return Err(HandlerError::retry("the claim's transaction is closed"));
        }
        Ok(Tx { guard })
    }
}
