// autumn-js's server SDK against the embedded engine: customers, check, track, attach, errors.
// Prints one JSON object with what each call returned; the Python test asserts on it.
import { Autumn } from "autumn-js";

const autumn = new Autumn({
  secretKey: process.env.AUTUMN_SECRET_KEY,
  serverURL: process.env.AUTUMN_URL,
  failOpen: false,
});
const id = process.env.CUSTOMER_ID;
const out = {};

const created = await autumn.customers.getOrCreate({ customerId: id, email: `${id}@example.com` });
out.created = { id: created.id, email: created.email, plans: created.subscriptions.map((s) => s.planId) };
const check = await autumn.check({ customerId: id, featureId: "messages" });
out.check = { allowed: check.allowed, remaining: check.balance.remaining, granted: check.balance.granted };
const track = await autumn.track({ customerId: id, featureId: "messages", value: 3 });
out.track = { value: track.value, remaining: track.balance.remaining, usage: track.balance.usage };
const denied = await autumn.check({ customerId: id, featureId: "messages", requiredBalance: 98 });
out.denied = { allowed: denied.allowed };
const attach = await autumn.billing.attach({ customerId: id, planId: "premium" });
out.attach = { customerId: attach.customerId, paymentUrl: attach.paymentUrl, total: attach.invoice?.total };
const fetched = await autumn.customers.get({ customerId: id });
out.customer = {
  plans: fetched.subscriptions.map((s) => s.planId),
  granted: fetched.balances.messages.granted,
  sso: fetched.flags.sso?.planId ?? null,
};
const listed = await autumn.customers.list({ limit: 1000 });
out.listed = listed.list.some((c) => c.id === id);
try {
  await autumn.customers.get({ customerId: `${id}_missing` });
  out.error = null;
} catch (err) {
  out.error = { status: err.statusCode, body: JSON.parse(err.body) };
}
console.log(JSON.stringify(out));
