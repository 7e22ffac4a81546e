//! Code generation. The generated code only names runtime items through the
//! crate path (`::jetflow` by default) and `::core` / `::std`, and puts its
//! impls inside `const _: () = { ... };`.

use proc_macro2::{Group, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote};
use syn::{Attribute, Item, Path};

use crate::ast;
use crate::attr::{EventAttrs, HandlerAttrs};
use crate::ctxt::Ctxt;
use crate::valid;

mod event;
mod handler;
#[cfg(test)]
mod tests;

use event::event_impl;
use handler::{handler_impl, unit_struct};

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
