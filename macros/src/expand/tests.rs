use quote::quote;

use super::*;

fn pretty(tokens: TokenStream) -> String {
    let file: syn::File = syn::parse2(tokens).expect("the expansion parses as a file");
    prettyplease::unparse(&file)
}

#[test]
fn event_with_id_and_stream() {
    let out = expand_event(
        quote!(version = "v2", id = order_id, stream = "ORDERS"),
        quote! {
            /// An order was placed.
            #[derive(Debug, Clone)]
            pub struct OrderCreated {
                pub order_id: String,
                pub total_cents: u64,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn event_with_upcast_from() {
    let out = expand_event(
        quote!(
            name = "order.created",
            version = "v2",
            upcast_from = v1::OrderCreated
        ),
        quote! {
            /// An order was placed, with its currency.
            pub struct OrderCreatedV2 {
                pub order_id: String,
                pub currency: String,
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn handler_with_options_and_extractors() {
    let out = expand_handler(
        quote!(
            group = "inventory",
            subject = "order.created.v1",
            max_deliver = 3,
            backoff = "1s, 5s",
            ack_wait = "30s",
            concurrency = 8,
            dead_letter = false,
            deliver = "new",
        ),
        quote! {
            /// Reserves stock for a new order.
            pub async fn reserve_stock(
                order: OrderCreated,
                ctx: Context,
                State(db): State<Db>,
            ) -> Result<(), HandlerError> {
                db.reserve(&order.order_id, ctx.delivered()).await?;
                Ok(())
            }
        },
    );
    insta::assert_snapshot!(pretty(out));
}

#[test]
fn crate_override_is_used_everywhere() {
    let out = expand_event(
        quote!(version = "v1", crate = my::jetflow),
        quote!(
            struct Ping {}
        ),
    );
    let text = out.to_string();
    assert!(text.contains("\"my::jetflow::__private::serde\""), "{text}");
    assert!(
        !text
            .replace("my :: jetflow", "")
            .replace("my::jetflow", "")
            .replace("__jetflow_", "")
            .contains("jetflow"),
        "{text}"
    );
    let out = expand_handler(
        quote!(crate = my::jetflow),
        quote!(
            async fn on_ping(p: Ping) {}
        ),
    );
    let text = out.to_string();
    assert!(text.contains("my :: jetflow :: Handler"), "{text}");
    assert!(
        !text.replace("my :: jetflow", "").contains("jetflow ::"),
        "{text}"
    );
}

#[test]
fn user_serde_derives_are_kept() {
    let out = expand_event(
        quote!(version = "v1"),
        quote! {
            #[derive(my_serde::Serialize, Deserialize)]
            #[serde(crate = "my_serde")]
            struct Ping {}
        },
    );
    let text = out.to_string();
    assert!(!text.contains("__private :: serde :: Serialize"), "{text}");
    assert!(
        !text.contains("__private :: serde :: Deserialize"),
        "{text}"
    );
    assert_eq!(text.matches("serde (crate").count(), 1, "{text}");

    let out = expand_event(
        quote!(version = "v1"),
        quote!(
            #[derive(Serialize)]
            struct Ping {}
        ),
    );
    let text = out.to_string();
    assert!(!text.contains("__private :: serde :: Serialize"), "{text}");
    assert!(text.contains("__private :: serde :: Deserialize"), "{text}");
    assert!(text.contains("\"::jetflow::__private::serde\""), "{text}");
}

#[test]
fn errors_keep_the_item() {
    let out = expand_event(
        quote!(verison = "v1"),
        quote!(
            enum Kind {
                A,
            }
        ),
    );
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 2, "{text}");
    assert!(text.contains("enum Kind"), "{text}");

    // A struct with bad options still gets its impl: uses of it do not cascade.
    let out = expand_event(
        quote!(name = "Ping"),
        quote!(
            struct Ping {}
        ),
    );
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 2, "{text}");
    assert!(text.contains("impl :: jetflow :: Event for Ping"), "{text}");

    // A bad signature: errors plus the unit struct, no impl.
    let out = expand_handler(
        quote!(group = "a b"),
        quote!(
            pub fn on_ping(p: &Ping) {}
        ),
    );
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 3, "{text}");
    assert!(text.contains("pub struct on_ping ;"), "{text}");
    assert!(!text.contains("impl"), "{text}");

    // Bad options only: errors plus the full expansion without them.
    let out = expand_handler(
        quote!(group = "a b", max_deliver = 2),
        quote!(
            async fn on_ping(p: Ping) {}
        ),
    );
    let text = out.to_string();
    assert_eq!(text.matches("compile_error").count(), 1, "{text}");
    assert!(
        text.contains("impl :: jetflow :: Handler for on_ping"),
        "{text}"
    );
    assert!(text.contains(". max_deliver (2)"), "{text}");
    assert!(!text.contains(". group"), "{text}");
}
