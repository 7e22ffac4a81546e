//! Code generation. The generated code only names runtime items through the
//! crate path (`::jetflow` by default) and `::core` / `::std`, and puts its
//! impls inside `const _: () = { ... };`.

use proc_macro2::{Group, Literal, Span, TokenStream, TokenTree};
use quote::{ToTokens, format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Attribute, Item, LitStr, Path, ReturnType, Token, Visibility, punctuated::Punctuated};

use crate::ast;
use crate::attr::{EventAttrs, HandlerAttrs};
use crate::ctxt::Ctxt;
use crate::valid::{self, EventSpec, HandlerSpec};

/// `#[event(attr)] item`. Errors become `compile_error!`s next to the best
/// expansion still possible, so the user sees them and nothing else.
pub(crate) fn expand_event(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = EventAttrs::parse(&cx, attr);
    let output = match syn::parse2::<Item>(item.clone()) {
        Err(err) => {
            cx.syn_error(err);
            item
        }
        Ok(parsed) => match ast::Event::from_syn(&cx, attrs, parsed) {
            None => item,
            Some(event) => {
                let spec = valid::event(&cx, &event);
                if spec.expandable {
                    event_impl(&event, &spec)
                } else {
                    item
                }
            }
        },
    };
    with_errors(cx, output)
}

/// `#[handler(attr)] item`. With a function that cannot be wrapped, the
/// output is the unit struct alone, so that uses of the handler still resolve.
pub(crate) fn expand_handler(attr: TokenStream, item: TokenStream) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = HandlerAttrs::parse(&cx, attr);
    let output = match syn::parse2::<Item>(item.clone()) {
        Err(err) => {
            cx.syn_error(err);
            item
        }
        Ok(parsed) => match ast::Handler::from_syn(&cx, attrs, parsed) {
            None => item,
            Some(handler) => {
                let spec = valid::handler(&cx, &handler);
                if spec.signature_ok {
                    handler_impl(&handler, &spec)
                } else if handler.original.sig.receiver().is_some() {
                    // A method inside an `impl` block: a struct cannot go there.
                    item
                } else {
                    unit_struct(&handler)
                }
            }
        },
    };
    with_errors(cx, output)
}

fn with_errors(cx: Ctxt, output: TokenStream) -> TokenStream {
    match cx.check() {
        Ok(()) => output,
        Err(err) => {
            let errors = err.into_compile_error();
            quote!(#errors #output)
        }
    }
}

fn event_impl(event: &ast::Event, spec: &EventSpec) -> TokenStream {
    let krate = crate_path(event.attrs.krate.as_ref());
    let item = &event.original;
    let ident = &item.ident;

    let derived = user_derives(&item.attrs);
    let mut derives = Vec::new();
    if !derived.serialize {
        derives.push(quote!(#krate::__private::serde::Serialize));
    }
    if !derived.deserialize {
        derives.push(quote!(#krate::__private::serde::Deserialize));
    }
    let private_path = |dep: &str| {
        LitStr::new(
            &format!("{}::__private::{dep}", path_to_string(&krate)),
            Span::call_site(),
        )
    };
    let serde_attrs = if derives.is_empty() {
        TokenStream::new()
    } else if has_crate_attr(&item.attrs, "serde") {
        quote!(#[derive(#(#derives),*)])
    } else {
        let serde = private_path("serde");
        quote!(#[derive(#(#derives),*)] #[serde(crate = #serde)])
    };
    let schemars_attrs = if derived.json_schema {
        TokenStream::new()
    } else if has_crate_attr(&item.attrs, "schemars") {
        quote!(#[derive(#krate::__private::schemars::JsonSchema)])
    } else {
        let schemars = private_path("schemars");
        quote!(#[derive(#krate::__private::schemars::JsonSchema)] #[schemars(crate = #schemars)])
    };

    let (name, version, stream) = (&spec.name, &spec.version, &spec.stream);
    let subject = format!("{name}.{version}");
    let event_key = spec.key.as_ref().map(|field| {
        // Spanned on the field named by `id`, where a non-`Display` type is reported.
        let key = quote_spanned!(field.span()=> ::std::string::ToString::to_string(&self.#field));
        quote! {
            fn event_key(&self) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(#key)
            }
        }
    });

    let schemars = quote!(#krate::__private::schemars);
    let schema = quote! {
        fn schema(
            __jetflow_generator: &mut #schemars::SchemaGenerator,
        ) -> ::core::option::Option<#schemars::Schema> {
            ::core::option::Option::Some(__jetflow_generator.subschema_for::<Self>())
        }
    };
    let (upcast, upcast_check) = match &spec.upcast_from {
        None => (TokenStream::new(), TokenStream::new()),
        Some(from) => upcast_impl(&krate, ident, spec, from),
    };

    let (notification, notification_impl) = if spec.notification {
        (
            quote!(
                const NOTIFICATION: bool = true;
            ),
            quote! {
                #[automatically_derived]
                impl #krate::Notification for #ident {}
            },
        )
    } else {
        (TokenStream::new(), TokenStream::new())
    };

    quote! {
        #serde_attrs
        #schemars_attrs
        #item
        const _: () = {
            #[automatically_derived]
            impl #krate::Event for #ident {
                const NAME: &'static str = #name;
                const VERSION: &'static str = #version;
                const SUBJECT: &'static str = #subject;
                const STREAM: &'static str = #stream;
                #notification
                #event_key
                #schema
                #upcast
            }
            #notification_impl
            #upcast_check
        };
    }
}

/// With `upcast_from = From`: the chain's `history` and `decode`, and the
/// compile-time rules of the link (same name, newer version). Both are
/// spanned on `From`, where a missing `impl From<From>` or a broken rule
/// is reported.
fn upcast_impl(
    krate: &Path,
    ident: &syn::Ident,
    spec: &EventSpec,
    from: &Path,
) -> (TokenStream, TokenStream) {
    let span = from.span();
    let krate = respan(krate, span);
    let (name, version) = (&spec.name, &spec.version);
    // The new type spanned on `From` too: a missing `From` impl is reported there.
    let ident = respan(ident, span);
    let methods = quote_spanned! {span=>
        fn history() -> ::std::vec::Vec<#krate::event::EventInfo> {
            #krate::event::history_upcast::<#ident, #from>()
        }
        fn decode(
            __jetflow_version: &::core::primitive::str,
            __jetflow_payload: &[::core::primitive::u8],
        ) -> ::core::result::Result<Self, #krate::event::DecodeError> {
            #krate::event::decode_upcast::<#ident, #from>(__jetflow_version, __jetflow_payload)
        }
    };
    let prev = path_to_string(from);
    let messages = [
        format!(
            "`{prev}` is not a version of `{name}`: every type of an upcast chain has the same event name; \
             set `name = \"{name}\"` on `{prev}`, or remove `upcast_from` to make `{ident}` a new event"
        ),
        format!(
            "`{ident}` and `{prev}` are both version `{version}` of `{name}`: each version is one type; give \
             `{ident}` the next version"
        ),
        format!(
            "`{ident}` is version `{version}` but upcasts from `{prev}`, a newer version: versions increase \
             along an upcast chain (v1 -> v2 -> v3); give `{ident}` a version after `{prev}`'s"
        ),
    ];
    let check = quote_spanned! {span=>
        const _: () = #krate::__private::assert_upcast(
            (<#from as #krate::Event>::NAME, <#from as #krate::Event>::VERSION),
            (#name, #version),
            [#(#messages),*],
        );
    };
    (methods, check)
}

fn handler_impl(handler: &ast::Handler, spec: &HandlerSpec) -> TokenStream {
    let krate = crate_path(handler.attrs.krate.as_ref());
    let func = &handler.original;
    let name = &func.sig.ident;
    let name_str = name.to_string();
    let name_str = name_str.strip_prefix("r#").unwrap_or(&name_str);
    let Some(event_ty) = handler.event_type() else {
        // `valid::handler` only lets a function with an event argument through.
        return unit_struct(handler);
    };

    let options = option_calls(&krate, spec);

    let extractors: Vec<&syn::Type> = handler.extractor_types().collect();
    let args: Vec<_> = (1..=extractors.len())
        .map(|i| format_ident!("__jetflow_arg{}", i))
        .collect();
    // Spanned on each argument type: a type that is not an extractor is reported there.
    let checks = extractors.iter().map(|ty| {
        let krate = respan(&krate, ty.span());
        quote_spanned! {ty.span()=>
            <#ty as #krate::handler::FromContext>::check(<Self as #krate::Handler>::OPTIONS.name, __jetflow_ext)?;
        }
    });
    let extract = extractors.iter().zip(&args).map(|(ty, arg)| {
        let krate = respan(&krate, ty.span());
        quote_spanned! {ty.span()=>
            let #arg = <#ty as #krate::handler::FromContext>::from_context(&__jetflow_ctx)?;
        }
    });
    // Spanned on the return type: an unsupported one is reported there.
    let output_span = match &func.sig.output {
        ReturnType::Type(_, ty) => ty.span(),
        ReturnType::Default => name.span(),
    };
    let krate_at_output = respan(&krate, output_span);
    let name_at_output = respan(name, output_span);
    let outcome = quote_spanned! {output_span=>
        #krate_at_output::handler::IntoOutcome::into_outcome(#name_at_output(__jetflow_event #(, #args)*).await)
    };
    // Spanned on the function's name: a future that is not `Send` is reported there.
    let boxed = quote_spanned! {name.span()=>
        ::std::boxed::Box::pin(async move {
            #(#extract)*
            #outcome
        })
    };

    let mut inner = func.clone();
    inner.vis = Visibility::Inherited;
    inner.attrs.retain(|a| !a.path().is_ident("doc"));

    let subject_check = spec.subject.as_ref().map(|subject| {
        let krate = respan(&krate, subject.span());
        quote_spanned! {subject.span()=>
            const _: () = #krate::__private::assert_subject_matches(<#event_ty as #krate::Event>::SUBJECT, #subject);
        }
    });

    let kind_checks = event_kind_checks(&krate, handler, spec, event_ty);

    // Spanned on the field: a field the event does not have, or one that
    // is not `Display`, is reported there.
    let order_key = spec.ordered_by.as_ref().map(|field| {
        quote_spanned! {field.span()=>
            fn order_key(&self, __jetflow_event: &#event_ty) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&__jetflow_event.#field))
            }
        }
    });

    let unit = unit_struct(handler);
    let cfgs = cfg_attrs(&func.attrs);
    quote! {
        #unit

        #(#cfgs)*
        const _: () = {
            #[automatically_derived]
            impl #krate::Handler for #name {
                type Event = #event_ty;
                const OPTIONS: #krate::handler::HandlerOptions =
                    #krate::handler::HandlerOptions::new(#name_str) #(#options)*;
                fn check(
                    &self,
                    __jetflow_ext: &#krate::handler::Extensions,
                ) -> ::core::result::Result<(), #krate::handler::MissingState> {
                    #(#checks)*
                    ::core::result::Result::Ok(())
                }
                #order_key
                fn call(
                    &self,
                    __jetflow_event: #event_ty,
                    __jetflow_ctx: #krate::Context,
                ) -> #krate::handler::BoxFuture<'static, ::core::result::Result<(), #krate::HandlerError>> {
                    #inner
                    #boxed
                }
            }
            #subject_check
            #(#kind_checks)*
        };
    }
}

/// Options that fit only one kind of event: `broadcast` only a notification;
/// `ack_wait`, `deliver` and `dead_letter = true` only a stored event. Each
/// check is spanned on its option, and evaluated against the event's
/// `NOTIFICATION` when the handler compiles.
fn event_kind_checks(
    krate: &Path,
    handler: &ast::Handler,
    spec: &HandlerSpec,
    event_ty: &syn::Type,
) -> Vec<TokenStream> {
    let attrs = &handler.attrs;
    let mut checks = Vec::new();
    let mut check = |span: proc_macro2::Span, notification: bool, message: String| {
        let krate = respan(krate, span);
        checks.push(quote_spanned! {span=>
            const _: () = #krate::__private::assert_event_kind(
                <#event_ty as #krate::Event>::NOTIFICATION,
                #notification,
                #message,
            );
        });
    };
    if let Some(flag) = &spec.broadcast {
        check(
            flag.span(),
            true,
            "`broadcast` is for notifications (`#[event(notification)]`); replicas of a group share a \
             stored event's durable: remove `broadcast`"
                .to_owned(),
        );
    }
    let durable_only = [
        ("ack_wait", attrs.ack_wait.as_ref().map(|l| l.span())),
        ("deliver", attrs.deliver.as_ref().map(|l| l.span())),
        (
            "dead_letter = true",
            attrs
                .dead_letter
                .as_ref()
                .filter(|b| b.value)
                .map(|b| b.span()),
        ),
    ];
    for (option, span) in durable_only {
        if let Some(span) = span {
            check(
                span,
                false,
                format!(
                    "`{option}` does not apply to a notification (nothing stores or acknowledges it); \
                     remove it"
                ),
            );
        }
    }
    checks
}

/// `.group("inventory")`, ... for each option that was given (and is valid).
fn option_calls(krate: &Path, spec: &HandlerSpec) -> Vec<TokenStream> {
    let millis = |d: &std::time::Duration| {
        let ms = Literal::u64_unsuffixed(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        quote!(::core::time::Duration::from_millis(#ms))
    };
    let mut calls = Vec::new();
    if let Some(group) = &spec.group {
        calls.push(quote!(.group(#group)));
    }
    if let Some(subject) = &spec.subject {
        calls.push(quote!(.subject(#subject)));
    }
    if let Some(n) = spec.max_deliver.map(Literal::u32_unsuffixed) {
        calls.push(quote!(.max_deliver(#n)));
    }
    if let Some(delays) = &spec.backoff {
        let delays = delays.iter().map(millis);
        calls.push(quote!(.backoff(&[#(#delays),*])));
    }
    if let Some(wait) = spec.ack_wait.as_ref().map(millis) {
        calls.push(quote!(.ack_wait(#wait)));
    }
    if let Some(n) = spec.concurrency.map(Literal::u32_unsuffixed) {
        calls.push(quote!(.concurrency(#n)));
    }
    if let Some(n) = spec.prefetch.map(Literal::u32_unsuffixed) {
        calls.push(quote!(.prefetch(#n)));
    }
    if spec.ordered_by.is_some() {
        calls.push(quote!(.ordered()));
    }
    if let Some(on) = spec.dead_letter {
        calls.push(quote!(.dead_letter(#on)));
    }
    if let Some(variant) = &spec.deliver {
        calls.push(quote!(.deliver(#krate::handler::DeliverPolicy::#variant)));
    }
    if spec.broadcast.is_some() {
        calls.push(quote!(.broadcast()));
    }
    calls
}

/// The unit struct that replaces the function: same name, visibility and docs.
fn unit_struct(handler: &ast::Handler) -> TokenStream {
    let func = &handler.original;
    let (vis, name) = (&func.vis, &func.sig.ident);
    let docs = func.attrs.iter().filter(|a| a.path().is_ident("doc"));
    let cfgs = cfg_attrs(&func.attrs);
    quote! {
        #(#docs)*
        #(#cfgs)*
        #[allow(non_camel_case_types)]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::marker::Copy, ::core::default::Default)]
        #vis struct #name;
    }
}

/// `tokens` with every span set to `span`, so that an error about generated
/// code that names them points at one token of the user's.
fn respan(tokens: &impl ToTokens, span: Span) -> TokenStream {
    tokens
        .to_token_stream()
        .into_iter()
        .map(|mut tt| {
            if let TokenTree::Group(g) = &tt {
                let mut group = Group::new(g.delimiter(), respan(&g.stream(), span));
                group.set_span(span);
                tt = TokenTree::Group(group);
            } else {
                tt.set_span(span);
            }
            tt
        })
        .collect()
}

fn cfg_attrs(attrs: &[Attribute]) -> impl Iterator<Item = &Attribute> {
    attrs.iter().filter(|a| a.path().is_ident("cfg"))
}

fn crate_path(krate: Option<&Path>) -> Path {
    krate
        .cloned()
        .unwrap_or_else(|| syn::parse_quote!(::jetflow))
}

/// `::jetflow`, `my::jetflow` (for `#[serde(crate = "...")]`).
fn path_to_string(path: &Path) -> String {
    let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
    let leading = if path.leading_colon.is_some() {
        "::"
    } else {
        ""
    };
    format!("{leading}{}", segments.join("::"))
}

/// The derives of the struct that `#[event]` would otherwise add.
struct UserDerives {
    serialize: bool,
    deserialize: bool,
    json_schema: bool,
}

/// Whether the struct already derives `Serialize` / `Deserialize` /
/// `JsonSchema` (any path ending in those names).
fn user_derives(attrs: &[Attribute]) -> UserDerives {
    let (mut serialize, mut deserialize, mut json_schema) = (false, false, false);
    for attr in attrs.iter().filter(|a| a.path().is_ident("derive")) {
        let Ok(paths) = attr.parse_args_with(Punctuated::<Path, Token![,]>::parse_terminated)
        else {
            continue;
        };
        for path in &paths {
            match path.segments.last().map(|s| s.ident.to_string()).as_deref() {
                Some("Serialize") => serialize = true,
                Some("Deserialize") => deserialize = true,
                Some("JsonSchema") => json_schema = true,
                _ => {}
            }
        }
    }
    UserDerives {
        serialize,
        deserialize,
        json_schema,
    }
}

/// Whether the struct already has `#[serde(crate = "...")]` (or `schemars`).
fn has_crate_attr(attrs: &[Attribute], tool: &str) -> bool {
    attrs
        .iter()
        .filter(|a| a.path().is_ident(tool))
        .any(|attr| {
            let mut found = false;
            let _ = attr.parse_nested_meta(|meta| {
                found |= meta.path.is_ident("crate");
                if meta.input.peek(Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
            found
        })
}

#[cfg(test)]
mod tests {
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
}
