//! `#[handler]`: the unit struct that replaces the function, its
//! `Handler` impl (options, extractor checks, the call, the lane key), and
//! the compile-time checks spanned on the options.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Path, ReturnType, Visibility};

use super::{cfg_attrs, crate_path, respan};
use crate::ast;
use crate::valid::HandlerSpec;

pub(super) fn handler_impl(handler: &ast::Handler, spec: &HandlerSpec) -> TokenStream {
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

    // The generated locals resolve at the call site, wherever their tokens
    // point for errors: the user's tokens may come from a `macro_rules!`
    // expansion, whose hygiene would hide a local declared by this macro
    // from a use spanned on such a token.
    let local = |name: &str| Ident::new(name, Span::call_site());
    let (event_var, ctx_var, ext_var) = (
        local("__jetflow_event"),
        local("__jetflow_ctx"),
        local("__jetflow_ext"),
    );

    let extractors: Vec<&syn::Type> = handler.extractor_types().collect();
    let args: Vec<_> = (1..=extractors.len())
        .map(|i| format_ident!("__jetflow_arg{}", i))
        .collect();
    // Spanned on each argument type: a type that is not an extractor is reported there.
    let checks = extractors.iter().map(|ty| {
        let krate = respan(&krate, ty.span());
        quote_spanned! {ty.span()=>
            <#ty as #krate::handler::FromContext>::check(<Self as #krate::Handler>::OPTIONS.name, #ext_var)?;
        }
    });
    // Spanned on each argument type: an extractor that needs the claim
    // (`Tx`) on a handler that is not `idempotent` is reported there.
    // Only for a type named `Tx` (so that an argument that is no extractor
    // at all gets one error, not two), only when not `idempotent`; the
    // assertion itself asks the type (`FromContext::NEEDS_CLAIM`).
    let idempotent = spec.idempotent.is_some();
    let named_tx = |ty: &&&syn::Type| match ty {
        syn::Type::Path(p) => p.path.segments.last().is_some_and(|s| s.ident == "Tx"),
        _ => false,
    };
    let claim_checks = extractors
        .iter()
        .filter(named_tx)
        .filter(|_| !idempotent)
        .map(|ty| {
            let krate = respan(&krate, ty.span());
            quote_spanned! {ty.span()=>
                const _: () = #krate::__private::assert_claimed(
                    <#ty as #krate::handler::FromContext>::NEEDS_CLAIM,
                    #idempotent,
                );
            }
        });
    let extract = extractors.iter().zip(&args).map(|(ty, arg)| {
        let krate = respan(&krate, ty.span());
        quote_spanned! {ty.span()=>
            let #arg = <#ty as #krate::handler::FromContext>::from_context(&#ctx_var)?;
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
        #krate_at_output::handler::IntoOutcome::into_outcome(#name_at_output(#event_var #(, #args)*).await)
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
            fn order_key(&self, #event_var: &#event_ty) -> ::core::option::Option<::std::string::String> {
                ::core::option::Option::Some(::std::string::ToString::to_string(&#event_var.#field))
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
                    #ext_var: &#krate::handler::Extensions,
                ) -> ::core::result::Result<(), #krate::handler::MissingState> {
                    #(#checks)*
                    ::core::result::Result::Ok(())
                }
                #order_key
                fn call(
                    &self,
                    #event_var: #event_ty,
                    #ctx_var: #krate::Context,
                ) -> #krate::handler::BoxFuture<'static, ::core::result::Result<(), #krate::HandlerError>> {
                    #inner
                    #boxed
                }
            }
            #subject_check
            #(#kind_checks)*
            #(#claim_checks)*
        };
    }
}

/// Options that fit only one kind of event: `broadcast` only a notification;
/// `ack_wait`, `deliver`, `dead_letter = true` and `idempotent` only a
/// stored event. Each
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
    if let Some(flag) = &spec.idempotent {
        check(
            flag.span(),
            false,
            "`idempotent` does not apply to a notification (nothing stores or redelivers it, so \
             there is no duplicate to skip); remove `idempotent`"
                .to_owned(),
        );
    }
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
    if spec.idempotent.is_some() {
        calls.push(quote!(.idempotent()));
    }
    calls
}

/// The unit struct that replaces the function: same name, visibility and docs.
pub(super) fn unit_struct(handler: &ast::Handler) -> TokenStream {
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
