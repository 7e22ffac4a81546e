//! Events and handlers written inside a `macro_rules!` expansion compile and
//! register like any other (the macro's generated locals are not hidden by
//! the expansion's hygiene), with extractors, ordered lanes and options.
#![deny(warnings)]

use jetflow::prelude::*;

#[event(version = "v1", id = sku)]
pub struct StockCounted {
    pub sku: String,
}

#[derive(Clone, Default)]
pub struct Seen;

macro_rules! handlers {
    ($($name:ident $group:tt),* $(,)?) => {
        $(
            #[handler(group = $group, concurrency = 4, ordered_by = sku)]
            async fn $name(event: StockCounted, ctx: Context, State(_seen): State<Seen>) {
                let _ = (event.sku, ctx.event_id());
            }
        )*
        fn register(app: App) -> App {
            app $(.handler($name))*
        }
    };
}

handlers!(count_a "a", count_b "b");

fn main() {
    let _ = register(App::new("stock").state(Seen));
}
