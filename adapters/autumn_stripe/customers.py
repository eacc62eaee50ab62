"""Stripe customers: creation, payment methods, and what this instance knows of them."""

from __future__ import annotations

from typing import Any

from autumn_stripe.plumbing import MAX_KEY, StripeBase, as_dict


class StripeCustomers(StripeBase):
    """Stripe customers: creation, payment methods, and what this instance knows of them."""

    def create_customer(
        self, *, customer_id: str | None, email: str | None, name: str | None, idempotency_key: str
    ) -> str:
        """Create the Stripe customer, tagged with the library's id to find it from Stripe.

        With an id and an email, a customer this library already created for that id is found
        again (list by email is strongly consistent, unlike Stripe's search) and reused: a
        process that died after Stripe created the customer, or a retry after Stripe forgot the
        idempotency key, must not leave a second customer behind.
        """
        if customer_id and email:
            found = self._call(
                "customer lookup",
                self.client.v1.customers.list,
                {"email": email, "limit": 100},
            )
            for candidate in found.data:
                meta = as_dict(candidate).get("metadata") or {}
                if meta.get("autumn_customer_id") == customer_id:
                    return str(candidate.id)
        params: dict[str, Any] = {"metadata": {"autumn_customer_id": customer_id or ""}}
        if email:
            params["email"] = email
        if name:
            params["name"] = name
        created = self._call(
            "customer creation",
            self.client.v1.customers.create,
            params,
            self._key(idempotency_key, "customer"),
        )
        gid = str(created.id)
        self._remember(self._fresh, gid)
        return gid

    def _remember(self, cache: dict[str, float], gid: str) -> None:
        with self._lock:
            cache[gid] = self._clock() + self.cache_ttl

    def _knows(self, cache: dict[str, float], gid: str) -> bool:
        deadline = cache.get(gid)
        return deadline is not None and self._clock() < deadline

    def _take_fresh(self, gid: str) -> bool:
        """Consume the "just created, no subscription yet" mark (valid for one use)."""
        with self._lock:
            deadline = self._fresh.pop(gid, None)
        return deadline is not None and self._clock() < deadline

    def forget(self, gid: str | None = None) -> None:
        """Drop what this instance remembers about a customer (all customers with None).

        Called on charges that were not paid and on webhooks that may change a customer's
        cards or subscriptions; an application that changes them behind the gateway's back
        (dashboard, its own SDK calls) within ``cache_ttl`` may call it too.
        """
        with self._lock:
            if gid is None:
                self._pm_known.clear()
                self._fresh.clear()
            else:
                self._pm_known.pop(gid, None)
                self._fresh.pop(gid, None)

    def attach_payment_method(self, gateway_customer_id: str, payment_method: str) -> str:
        """Attach a card (a token ``tok_...``/source, or a PaymentMethod ``pm_...``) as default.

        For applications that collect cards themselves (Stripe Elements): the gateway then
        knows the customer can pay, and the next ``has_payment_method`` needs no request.
        Returns the attached source or payment method id. A declined card raises
        ``PaymentFailed`` and leaves nothing attached.
        """
        gid = gateway_customer_id
        if payment_method.startswith("pm_"):
            self._call(
                "payment method attach",
                self.client.v1.payment_methods.attach,
                payment_method,
                {"customer": gid},
            )
            self._call(
                "default payment method update",
                self.client.v1.customers.update,
                gid,
                {"invoice_settings": {"default_payment_method": payment_method}},
                {"idempotency_key": f"autumn-default-pm:{gid}:{payment_method}"},
            )
            attached = payment_method
        else:
            source = self._call(
                "card attach",
                self.client.v1.customers.payment_sources.create,
                gid,
                {"source": payment_method},
                {"idempotency_key": f"autumn-source:{gid}:{payment_method}"[:MAX_KEY]},
            )
            attached = str(source.id)
        self._remember(self._pm_known, gid)
        return attached

    def has_payment_method(self, gateway_customer_id: str) -> bool:
        """A default card/source, a default payment method, or any attached card counts.

        An attached card that is not the default is made the customer's default invoice payment
        method here: subscriptions and invoices only charge the default, so without this the
        answer "yes" would be followed by a charge Stripe refuses.

        A "yes" (or a card attached through ``attach_payment_method``) is remembered for
        ``cache_ttl`` seconds, so a paid attach right after needs no customer request. A stale
        "yes" costs no money: the charge then ends ``failed``/``requires_action`` and the memory
        is dropped (also by webhooks that can remove a card, see ``_observe``).
        """
        if self._knows(self._pm_known, gateway_customer_id):
            return True
        customer = as_dict(
            self._call("customer lookup", self.client.v1.customers.retrieve, gateway_customer_id)
        )
        if customer.get("deleted"):
            return False
        settings = customer.get("invoice_settings") or {}
        if customer.get("default_source") or settings.get("default_payment_method"):
            self._remember(self._pm_known, gateway_customer_id)
            return True
        methods = self._call(
            "payment method lookup",
            self.client.v1.payment_methods.list,
            {"customer": gateway_customer_id, "type": "card", "limit": 1},
        )
        if not methods.data:
            return False
        pm = str(methods.data[0].id)
        self._call(
            "default payment method update",
            self.client.v1.customers.update,
            gateway_customer_id,
            {"invoice_settings": {"default_payment_method": pm}},
            {"idempotency_key": f"autumn-default-pm:{gateway_customer_id}:{pm}"},
        )
        self._remember(self._pm_known, gateway_customer_id)
        return True

    def _default_payment_method(self, customer: str) -> str | None:
        data = as_dict(self._call("customer lookup", self.client.v1.customers.retrieve, customer))
        settings = data.get("invoice_settings") or {}
        found = settings.get("default_payment_method") or data.get("default_source")
        if not found:
            methods = self._call(
                "payment method lookup",
                self.client.v1.payment_methods.list,
                {"customer": customer, "type": "card", "limit": 1},
            )
            found = methods.data[0].id if methods.data else None
        return self._id(found)
