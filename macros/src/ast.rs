//! The items the macros are applied to, as an internal model that keeps the
//! original syntax (and so the spans errors point at).

use proc_macro2::{Delimiter, TokenStream, TokenTree};
use quote::quote;
use syn::{FnArg, Item, ItemFn, ItemStruct, Type};

use crate::attr::{EventAttrs, HandlerAttrs};
use crate::ctxt::Ctxt;

/// A struct under `#[event]`.
pub(crate) struct Event {
    pub(crate) attrs: EventAttrs,
    /// The struct as written (the compiler already removed `#[event]`).
    pub(crate) original: ItemStruct,
}

impl Event {
    /// `None` (with an error recorded) if `item` is not a struct.
    pub(crate) fn from_syn(cx: &Ctxt, attrs: EventAttrs, item: Item) -> Option<Self> {
        let found = match item {
            Item::Struct(original) => return Some(Event { attrs, original }),
            Item::Enum(e) => (item_head(e.enum_token, &e.ident), "an enum"),
            Item::Union(u) => (item_head(u.union_token, &u.ident), "a union"),
            Item::Fn(f) => {
                let sig = &f.sig;
                let head = item_head(sig.fn_token, &sig.ident);
                cx.error_spanned_by(
                    head,
                    "`#[event]` goes on a struct, not a function; for a function use `#[handler]`",
                );
                return None;
            }
            other => (first_tokens(&other), "this item"),
        };
        let (tokens, what) = found;
        cx.error_spanned_by(
            tokens,
            format!("`#[event]` goes on a struct, not on {what}"),
        );
        None
    }
}

/// An `async fn` under `#[handler]`.
pub(crate) struct Handler {
    pub(crate) attrs: HandlerAttrs,
    /// The function as written (the compiler already removed `#[handler]`).
    pub(crate) original: ItemFn,
}

impl Handler {
    /// `None` (with an error recorded) if `item` is not a function.
    pub(crate) fn from_syn(cx: &Ctxt, attrs: HandlerAttrs, item: Item) -> Option<Self> {
        match item {
            Item::Fn(original) => Some(Handler { attrs, original }),
            Item::Struct(s) => {
                let msg = "`#[handler]` goes on an `async fn`, not a struct; for an event struct use `#[event]`";
                cx.error_spanned_by(item_head(s.struct_token, &s.ident), msg);
                None
            }
            other => {
                cx.error_spanned_by(first_tokens(&other), "`#[handler]` goes on an `async fn`");
                None
            }
        }
    }

    /// The arguments with a type (every argument but a `self` receiver).
    pub(crate) fn typed_args(&self) -> impl Iterator<Item = &Type> {
        self.original.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(pat) => Some(&*pat.ty),
            FnArg::Receiver(_) => None,
        })
    }

    /// The type of the first argument: the event.
    pub(crate) fn event_type(&self) -> Option<&Type> {
        self.typed_args().next()
    }

    /// The types of the arguments after the event: the extractors.
    pub(crate) fn extractor_types(&self) -> impl Iterator<Item = &Type> {
        self.typed_args().skip(1)
    }
}

fn item_head(keyword: impl quote::ToTokens, ident: &syn::Ident) -> TokenStream {
    quote!(#keyword #ident)
}

/// The keyword and name of an item (`trait Foo`, `impl Foo`, `mod foo`), for an
/// error that should not underline all of it.
fn first_tokens(item: &Item) -> TokenStream {
    let mut tokens = quote!(#item).into_iter().peekable();
    // skip outer attributes and the visibility
    loop {
        match tokens.peek() {
            Some(TokenTree::Punct(p)) if p.as_char() == '#' => {
                tokens.next();
                tokens.next();
            }
            Some(TokenTree::Ident(i)) if i == "pub" => {
                tokens.next();
                if matches!(tokens.peek(), Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Parenthesis)
                {
                    tokens.next();
                }
            }
            _ => break,
        }
    }
    let mut head: TokenStream = tokens.next().into_iter().collect();
    if let Some(TokenTree::Ident(name)) = tokens.next() {
        head.extend([TokenTree::Ident(name)]);
    }
    head
}
