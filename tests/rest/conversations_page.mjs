// The TypeScript snippets of Letta's "Conversations" page, run with @letta-ai/letta-client against the
// server in LETTA_BASE_URL (the SDK reads it and LETTA_API_KEY). Lines starting "RESULT " carry JSON for
// the test; everything else is what the page prints.
import Letta from "@letta-ai/letta-client";

const client = new Letta({ apiKey: process.env.LETTA_API_KEY });
const result = (key, value) => console.log(`RESULT ${JSON.stringify({ [key]: value })}`);
const drain = async (stream) => {
  const chunks = [];
  for await (const chunk of stream) chunks.push(chunk);
  return chunks;
};

const agent = await client.agents.create({
  name: "ts-docs",
  model: "openai/agent-model",
  memory_blocks: [{ label: "human", value: "Name: unknown" }],
});
result("agent", agent.id);

// Creating a conversation
const conversation = await client.conversations.create({
  agent_id: agent.id,
});
console.log(`Created conversation: ${conversation.id}`);
result("conversation", conversation.id);

// Sending messages: the response is always a stream
const stream = await client.conversations.messages.create(conversation.id, {
  messages: [{ role: "user", content: "Hi, I am Ada" }],
  stream_tokens: true,
});
const chunks = [];
for await (const chunk of stream) {
  chunks.push(chunk);
  if (chunk.message_type === "assistant_message") {
    process.stdout.write(chunk.content);
  }
}
process.stdout.write("\n");
result("chunks", chunks.map((c) => ({ type: c.message_type, id: c.id ?? null, seq_id: c.seq_id ?? null,
  content: c.content ?? null, reasoning: c.reasoning ?? null, stop_reason: c.stop_reason ?? null,
  total_tokens: c.total_tokens ?? null, step_count: c.step_count ?? null })));

// Model overrides: a conversation with its own model, a send with override_model (not persisted)
const fast = await client.conversations.create({ agent_id: agent.id, model: "openai/gpt-5-mini" });
await drain(await client.conversations.messages.create(fast.id, {
  messages: [{ role: "user", content: "Quick question" }],
}));
const harder = await drain(await client.conversations.messages.create(fast.id, {
  messages: [{ role: "user", content: "Think harder" }],
  override_model: "openai/claude-haiku-4-5",
}));
result("override", { assistant: harder.filter((c) => c.message_type === "assistant_message").map((c) => c.content),
  kept: (await client.conversations.retrieve(fast.id)).model });

// Listing conversations
const conversations = await client.conversations.list({
  agent_id: agent.id,
});
for (const conv of conversations) {
  console.log(conv.id);
}
result("conversations", conversations.map((c) => c.id));

// A turn with a tool call, so the history holds every message type
await drain(await client.conversations.messages.create(conversation.id, {
  messages: [{ role: "user", content: "I like pottery" }],
}));

// Retrieving the message history. The page's `for (const msg of messages)` and
// `messages[messages.length - 1]` fail against any server: the SDK's page object is only
// async-iterable and not an array. Shown failing, then as a user must write them.
const messages = await client.conversations.messages.list(conversation.id);
try {
  for (const msg of messages) console.log(msg.id);
  result("page_for_of", "ran");
} catch (e) {
  result("page_for_of", `${e.constructor.name}: ${e.message}`);
}
try {
  result("page_index", messages[messages.length - 1].id);
} catch (e) {
  result("page_index", `${e.constructor.name}: ${e.message}`);
}
const lines = [];
for await (const msg of messages) {
  const line = `[${msg.message_type}] ${msg.content || msg.reasoning || ""}`;
  console.log(line);
  lines.push(line);
}
result("history", lines);
const items = messages.getPaginatedItems(); // the first page as an array (newest first by default)
const oldest = items[items.length - 1];
result("oldest", { id: oldest.id, type: oldest.message_type });
const call = items.find((m) => m.message_type === "tool_call_message");
const ret = items.find((m) => m.message_type === "tool_return_message");
result("tool", { name: call.tool_call.name, call_id: call.tool_call.tool_call_id, return_id: ret.tool_call_id,
  status: ret.status });
const ascending = [];
for await (const msg of client.conversations.messages.list(conversation.id, { order: "asc" })) ascending.push(msg.id);
result("ascending", ascending);

// Forking: the whole conversation, then through one message
const fork = await client.conversations.fork(conversation.id);
const forked = [];
for await (const msg of client.conversations.messages.list(fork.id, { order: "asc" })) forked.push(msg.id);
result("fork", { id: fork.id, agent_id: fork.agent_id, messages: forked });
const early = await client.conversations.fork(conversation.id, { message_id: oldest.id });
const earlyPage = await client.conversations.messages.list(early.id, { order: "asc" });
result("early_fork", earlyPage.getPaginatedItems().map((m) => m.id));

// Cancel with nothing running; compact; search
result("cancel", await client.conversations.cancel(conversation.id));
const compacted = await client.conversations.messages.compact(conversation.id);
result("compact", { summary: compacted.summary, before: compacted.num_messages_before,
  after: compacted.num_messages_after });
const found = await client.messages.search({ query: "pottery", agent_id: agent.id });
result("search", found.map((m) => ({ type: m.message_type, conversation_id: m.conversation_id })));

// Errors carry Letta's status classes
try {
  await client.conversations.retrieve("conv-00000000-0000-4000-8000-000000000000");
  result("not_found", "no error");
} catch (e) {
  result("not_found", { name: e.constructor.name, status: e.status });
}

// Beyond the page: agent-direct mode, as Letta's Streaming page sends (JSON unless `streaming: true`)
const whole = await client.agents.messages.create(agent.id, { messages: [{ role: "user", content: "direct" }] });
const streamed = await drain(await client.agents.messages.create(agent.id, {
  messages: [{ role: "user", content: "direct stream" }], streaming: true,
}));
const direct = await client.conversations.messages.compact("default", { agent_id: agent.id });
result("agent_direct", { whole: whole.messages.map((m) => m.content ?? null), stop: whole.stop_reason.stop_reason,
  streamed: streamed.filter((c) => c.message_type === "assistant_message").map((c) => c.content),
  compacted: direct.num_messages_before });
