//! The rules an event or handler must follow. Each rule records its error in
//! the [`Ctxt`] and moves on; the result holds the values that passed, with
//! defaults filled in, for `expand/`. The rules themselves are
//! `jetflow_rules`'s, shared with the runtime; this module reports their
//! errors at the right spans.

use std::fmt::Display;
use std::time::Duration;

use jetflow_rules::{
    IdentifierKind, OptionError, check_ack_wait, check_backoff_delays, check_backoff_retries,
    check_concurrency, check_idempotent, check_max_deliver, check_prefetch, default_event_name,
    default_stream, parse_duration, parse_duration_list, validate_event_name, validate_identifier,
    validate_subject, validate_version,
};
use proc_macro2::{Ident, Span};
use quote::quote;
use syn::{Fields, Generics, LitInt, Path, PathArguments, Type};

use crate::ast;
use crate::attr::suggest;
use crate::ctxt::Ctxt;

/// The resolved values of an event.
pub(crate) struct EventSpec {
    pub(crate) name: String,
    pub(crate) version: String,
    pub(crate) stream: String,
    /// The business-key field, if `id` names an existing field.
    pub(crate) key: Option<Ident>,
    /// The previous version's type, if `upcast_from` names one.
    pub(crate) upcast_from: Option<Path>,
    /// A notification: no stream stores it.
    pub(crate) notification: bool,
    /// `false` when no impl can be generated for the struct (it is generic).
    pub(crate) expandable: bool,
}

pub(crate) fn event(cx: &Ctxt, event: &ast::Event) -> EventSpec {
    let (attrs, item) = (&event.attrs, &event.original);
    let expandable = !is_generic(&item.generics);
    if !expandable {
        cx.error_spanned_by(
            generics_tokens(&item.generics),
            "events cannot be generic: an event is one concrete type on the wire; use concrete field types",
        );
    }

    let version = match &attrs.version {
        Some(lit) => {
            let version = lit.value();
            if let Err(msg) = validate_version(&version) {
                cx.error_spanned_by(lit, msg);
            }
            version
        }
        // `version = 1` or `verison = "v1"`: already reported.
        None if attrs.mentioned.contains(&"version") => "v1".to_owned(),
        None => {
            cx.error_at(
                Span::call_site(),
                r#"missing `version`: every event has a version, e.g. `#[event(version = "v1")]`"#,
            );
            "v1".to_owned()
        }
    };

    let name = match &attrs.name {
        Some(lit) => {
            let name = lit.value();
            if let Err(msg) = validate_event_name(&name) {
                cx.error_spanned_by(lit, msg);
            }
            name
        }
        None => {
            let name = default_event_name(&item.ident.to_string());
            if let Err(msg) = validate_event_name(&name) {
                cx.error_spanned_by(
                    &item.ident,
                    format!("cannot derive an event name from `{}`: {msg}; set it with `name = \"...\"`", item.ident),
                );
            }
            name
        }
    };

    let stream = match &attrs.stream {
        Some(lit) => {
            let stream = lit.value();
            if let Err(msg) = validate_identifier(IdentifierKind::Stream, &stream) {
                cx.error_spanned_by(lit, msg);
            }
            stream
        }
        None => default_stream(&name),
    };

    let key = attrs.id.as_ref().and_then(|id| {
        let ty = &item.ident;
        let kind = match &item.fields {
            Fields::Named(fields) => {
                if fields.named.iter().any(|f| f.ident.as_ref() == Some(id)) {
                    return Some(id.clone());
                }
                let names: Vec<String> = fields
                    .named
                    .iter()
                    .filter_map(|f| f.ident.as_ref())
                    .map(ToString::to_string)
                    .collect();
                let candidates: Vec<&str> = names.iter().map(String::as_str).collect();
                let hint = match suggest(&id.to_string(), &candidates) {
                    Some(best) => format!("did you mean `{best}`? "),
                    None => String::new(),
                };
                let list: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
                cx.error_spanned_by(
                    id,
                    format!(
                        "`{ty}` has no field `{id}`; {hint}`id` names the field that holds the business key \
                         (fields: {})",
                        list.join(", ")
                    ),
                );
                return None;
            }
            Fields::Unnamed(_) => "a tuple struct",
            Fields::Unit => "a unit struct",
        };
        cx.error_spanned_by(id, format!("`id` names a field, but `{ty}` is {kind}; use a struct with named fields"));
        None
    });

    let upcast_from = attrs.upcast_from.clone().filter(|path| {
        let own = path.is_ident(&item.ident) || path.is_ident("Self");
        if own {
            cx.error_spanned_by(
                path,
                format!(
                    "`{}` cannot upcast from itself; `upcast_from` names the type of the previous version \
                     of the event",
                    item.ident
                ),
            );
        }
        !own
    });

    if let (Some(flag), Some(stream)) = (&attrs.notification, &attrs.stream) {
        cx.error_spanned_by(
            stream,
            format!(
                "a notification is stored in no stream, so it takes no `stream`; remove `stream = ...`, or \
                 remove `{flag}` to store the event"
            ),
        );
    }
    if let Some(path) = &attrs.krate {
        crate_path(cx, path);
    }
    EventSpec {
        name,
        version,
        stream,
        key,
        upcast_from,
        notification: attrs.notification.is_some(),
        expandable,
    }
}

/// The options of a handler that passed the rules, with their values.
pub(crate) struct HandlerSpec {
    /// `false` when the function cannot be wrapped (not async, no event, ...).
    pub(crate) signature_ok: bool,
    pub(crate) subject: Option<syn::LitStr>,
    pub(crate) group: Option<syn::LitStr>,
    pub(crate) max_deliver: Option<u32>,
    pub(crate) backoff: Option<Vec<Duration>>,
    pub(crate) ack_wait: Option<Duration>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) prefetch: Option<u32>,
    /// The event's field that orders its events (checked where it expands).
    pub(crate) ordered_by: Option<Ident>,
    pub(crate) dead_letter: Option<bool>,
    /// The `DeliverPolicy` variant.
    pub(crate) deliver: Option<Ident>,
    /// `broadcast`, as written.
    pub(crate) broadcast: Option<Ident>,
    /// `idempotent`, as written (and valid with `max_deliver`).
    pub(crate) idempotent: Option<Ident>,
}

pub(crate) fn handler(cx: &Ctxt, handler: &ast::Handler) -> HandlerSpec {
    let attrs = &handler.attrs;

    let subject = attrs
        .subject
        .clone()
        .filter(|lit| check(cx, lit, validate_subject(&lit.value())));
    let group = attrs.group.clone().filter(|lit| {
        check(
            cx,
            lit,
            validate_identifier(IdentifierKind::Group, &lit.value()),
        )
    });

    let max_deliver = attrs.max_deliver.as_ref().and_then(|lit| {
        int_option(
            cx,
            lit,
            check_max_deliver,
            "`max_deliver` must be at most 4294967295",
        )
    });
    let concurrency = attrs.concurrency.as_ref().and_then(|lit| {
        int_option(
            cx,
            lit,
            check_concurrency,
            OptionError::ConcurrencyOutOfRange,
        )
    });
    let prefetch = attrs
        .prefetch
        .as_ref()
        .and_then(|lit| int_option(cx, lit, check_prefetch, OptionError::PrefetchTooLarge));

    let backoff = attrs.backoff.as_ref().and_then(|lit| {
        let delays = parse_duration_list(&lit.value())
            .map_err(|msg| cx.error_spanned_by(lit, msg))
            .ok()?;
        if !check(cx, lit, check_backoff_delays(&delays)) {
            return None;
        }
        // Only compare with a valid `max_deliver`; a bad one already has its error.
        let max_deliver_ok = attrs.max_deliver.is_none() || max_deliver.is_some();
        if max_deliver_ok && !check(cx, lit, check_backoff_retries(delays.len(), max_deliver)) {
            return None;
        }
        Some(delays)
    });

    let ack_wait = attrs.ack_wait.as_ref().and_then(|lit| {
        let wait = parse_duration(&lit.value())
            .map_err(|msg| cx.error_spanned_by(lit, msg))
            .ok()?;
        check(cx, lit, check_ack_wait(wait)).then_some(wait)
    });

    let deliver = attrs.deliver.as_ref().and_then(|lit| {
        let variant = match lit.value().as_str() {
            "all" => "All",
            "new" => "New",
            "last" => "Last",
            _ => {
                cx.error_spanned_by(
                    lit,
                    r#"`deliver` must be one of `"all"`, `"new"` or `"last"`"#,
                );
                return None;
            }
        };
        Some(Ident::new(variant, lit.span()))
    });

    let idempotent = attrs
        .idempotent
        .clone()
        .filter(|flag| check(cx, flag, check_idempotent(true, max_deliver)));

    if let Some(path) = &attrs.krate {
        crate_path(cx, path);
    }
    // After the options: errors are reported in source order.
    let signature_ok = signature(cx, handler);

    HandlerSpec {
        signature_ok,
        subject,
        group,
        max_deliver,
        backoff,
        ack_wait,
        concurrency,
        prefetch,
        ordered_by: attrs.ordered_by.clone(),
        dead_letter: attrs.dead_letter.as_ref().map(|b| b.value),
        deliver,
        broadcast: attrs.broadcast.clone(),
        idempotent,
    }
}

/// The shape of the function; `false` if it cannot be wrapped.
fn signature(cx: &Ctxt, handler: &ast::Handler) -> bool {
    let sig = &handler.original.sig;
    let before = cx.error_count();
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            "a handler must be an `async fn`; add `async` before `fn`",
        );
    }
    if let syn::Safety::Unsafe(token) = &sig.safety {
        cx.error_spanned_by(token, "a handler cannot be `unsafe`");
    }
    if let Some(receiver) = sig.receiver() {
        cx.error_spanned_by(
            receiver,
            "a handler cannot take `self`: it is a free `async fn`; move it out of the `impl` block",
        );
    }
    if is_generic(&sig.generics) {
        cx.error_spanned_by(
            generics_tokens(&sig.generics),
            "a handler cannot be generic: its event and argument types must be concrete",
        );
    }
    match handler.event_type() {
        None => cx.error_at(
            sig.paren_token.span.join(),
            "a handler's first argument is the event it handles, e.g. `order: OrderCreated`",
        ),
        Some(ty) => match peel(ty) {
            Type::Reference(_) => {
                cx.error_spanned_by(ty, "take the event by value: remove the `&`")
            }
            inner => {
                if let Some(name) = last_segment(inner).filter(|n| *n == "Context" || *n == "State")
                {
                    cx.error_spanned_by(
                        ty,
                        format!(
                            "the first argument must be the event; `{name}` comes after it, e.g. \
                             `async fn reserve(order: OrderCreated, ctx: Context)`"
                        ),
                    );
                }
            }
        },
    }
    for ty in handler.typed_args() {
        match peel(ty) {
            Type::ImplTrait(_) => {
                cx.error_spanned_by(ty, "handler arguments need a named type, not `impl Trait`")
            }
            Type::Infer(_) => {
                cx.error_spanned_by(ty, "handler arguments need a named type, not `_`")
            }
            _ => {}
        }
    }
    cx.error_count() == before
}

/// Records `result`'s error spanned on `tokens`; `true` if it is `Ok`.
fn check<E: Display>(cx: &Ctxt, tokens: impl quote::ToTokens, result: Result<(), E>) -> bool {
    result
        .map_err(|msg| cx.error_spanned_by(tokens, msg))
        .is_ok()
}

/// An integer option: a `u32` that passes `rule`; `too_large` is the error
/// of a literal that does not fit in a `u32`.
fn int_option(
    cx: &Ctxt,
    lit: &LitInt,
    rule: fn(u32) -> Result<(), OptionError>,
    too_large: impl Display,
) -> Option<u32> {
    match lit.base10_parse::<u32>() {
        Ok(n) => check(cx, lit, rule(n)).then_some(n),
        Err(_) => {
            cx.error_spanned_by(lit, too_large);
            None
        }
    }
}

/// `crate = path` must be a plain path (no generic arguments).
fn crate_path(cx: &Ctxt, path: &Path) {
    if path
        .segments
        .iter()
        .any(|s| !matches!(s.arguments, PathArguments::None))
    {
        cx.error_spanned_by(
            path,
            "`crate` expects a plain path to the jetflow crate, e.g. `crate = ::jetflow`",
        );
    }
}

fn is_generic(generics: &Generics) -> bool {
    !generics.params.is_empty() || generics.where_clause.is_some()
}

/// `<T>` (or the `where` clause when there are no parameters).
fn generics_tokens(generics: &Generics) -> proc_macro2::TokenStream {
    if generics.params.is_empty() {
        let where_clause = &generics.where_clause;
        quote!(#where_clause)
    } else {
        let (lt, params, gt) = (&generics.lt_token, &generics.params, &generics.gt_token);
        quote!(#lt #params #gt)
    }
}

/// Removes parentheses and invisible groups around a type.
fn peel(ty: &Type) -> &Type {
    match ty {
        Type::Paren(t) => peel(&t.elem),
        Type::Group(t) => peel(&t.elem),
        other => other,
    }
}

fn last_segment(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last().map(|s| s.ident.to_string()),
        _ => None,
    }
}
