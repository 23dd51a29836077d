/* Lakehouse for Learning: the student page. Plain DOM code, no framework; every text from the
   server goes through textContent (never innerHTML), so a file name or a passage cannot inject markup. */
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  access: sessionStorage.getItem("access"),
  refresh: sessionStorage.getItem("refresh"),
  me: null,
  courses: [],
  course: null,
  documents: new Map(), // document id -> document
  jobs: new Map(), // job id -> {label, job, onDone}
  socket: null,
  retry: 0,
};

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

function pages(start, end) {
  return start === end ? `p. ${start}` : `pp. ${start}–${end}`;
}

function duration(seconds) {
  if (seconds == null || !isFinite(seconds)) return "";
  if (seconds < 60) return `about ${Math.max(1, Math.round(seconds))} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

// ---- HTTP -------------------------------------------------------------------------------
async function api(path, { method = "GET", body, form, retried = false } = {}) {
  const headers = {};
  if (state.access) headers.Authorization = `Bearer ${state.access}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    body: form || (body !== undefined ? JSON.stringify(body) : undefined),
  });
  if (response.status === 401 && state.refresh && !retried && !path.startsWith("/v1/auth/")) {
    if (await refreshTokens()) return api(path, { method, body, form, retried: true });
  }
  let data = null;
  const type = response.headers.get("content-type") || "";
  if (type.includes("json")) data = await response.json();
  return { status: response.status, ok: response.ok, data };
}

function problem(result) {
  const detail = result.data && (result.data.detail || result.data.title);
  return typeof detail === "string" ? detail : `The server answered ${result.status}.`;
}

async function refreshTokens() {
  const result = await api("/v1/auth/refresh", { method: "POST", body: { refresh_token: state.refresh } });
  if (!result.ok) {
    signOut("Your session ended; please sign in again.");
    return false;
  }
  saveTokens(result.data);
  return true;
}

function saveTokens(tokens) {
  state.access = tokens.access_token;
  state.refresh = tokens.refresh_token;
  sessionStorage.setItem("access", state.access);
  sessionStorage.setItem("refresh", state.refresh);
}

// ---- accounts ------------------------------------------------------------------------------
async function signIn(email, password) {
  const result = await api("/v1/auth/login", { method: "POST", body: { email, password } });
  if (!result.ok) return say(problem(result), true);
  saveTokens(result.data);
  await start();
}

function signOut(message = "Signed out.") {
  if (state.refresh) api("/v1/auth/logout", { method: "POST", body: { refresh_token: state.refresh } });
  sessionStorage.clear();
  for (const form of document.querySelectorAll("form")) form.reset(); // no password or answer stays behind
  state.access = state.refresh = state.me = state.course = null;
  // Nothing of the previous user stays on the page for the next one.
  state.jobs = new Map();
  state.documents = new Map();
  for (const id of ["progress", "documents", "hits", "notes", "quiz", "quiz-result", "cards", "join-code", "search-count"])
    $(id).replaceChildren();
  if (state.socket) state.socket.close(1000);
  state.socket = null;
  for (const id of ["course-panel", "upload-panel", "search-panel", "notes-panel", "quiz-panel", "cards-panel", "who"])
    $(id).hidden = true;
  $("auth-panel").hidden = false;
  say(message);
}

async function start() {
  const me = await api("/v1/users/me");
  if (!me.ok) return signOut(me.status === 401 ? "Please sign in." : problem(me));
  state.me = me.data;
  $("who-name").textContent = `${me.data.display_name} (${me.data.role})`;
  $("who").hidden = false;
  $("auth-panel").hidden = true;
  $("course-panel").hidden = false;
  $("create-course").hidden = me.data.role === "student";
  say(`Signed in as ${me.data.email}.`);
  connect();
  await loadCourses();
}

// ---- courses ---------------------------------------------------------------------------------
async function loadCourses(selectId) {
  const result = await api("/v1/courses");
  if (!result.ok) return say(problem(result), true);
  state.courses = result.data.items;
  const select = $("course-select");
  select.replaceChildren(
    ...(state.courses.length ? [] : [el("option", { value: "", text: "No course yet: create or join one" })]),
    ...state.courses.map((c) => el("option", { value: c.id, text: c.title })),
  );
  const wanted = selectId || (state.course && state.course.id) || (state.courses[0] && state.courses[0].id);
  if (wanted) {
    select.value = wanted;
    await selectCourse(wanted);
  }
}

async function selectCourse(courseId) {
  state.course = state.courses.find((c) => c.id === courseId) || null;
  if (!state.course) return;
  $("join-code").textContent = state.course.join_code ? `Join code for students: ${state.course.join_code}` : "";
  $("upload-panel").hidden = $("search-panel").hidden = false;
  $("notes-panel").hidden = $("quiz-panel").hidden = true;
  $("hits").replaceChildren();
  $("search-count").textContent = "";
  await Promise.all([loadDocuments(), loadCards()]);
}

// ---- documents and uploads ---------------------------------------------------------------------
async function loadDocuments() {
  if (!state.course) return;
  const result = await api(`/v1/courses/${state.course.id}/documents`);
  if (!result.ok) return say(problem(result), true);
  state.documents = new Map(result.data.items.map((d) => [d.id, d]));
  $("documents").replaceChildren(
    ...result.data.items.map((d) => {
      const actions = el("span", { class: "row" });
      if (d.status === "indexed") {
        actions.append(
          el("button", { type: "button", class: "secondary", text: "Notes", "aria-label": `Notes of ${d.filename}`,
            onclick: () => openNotes(d.id) }),
          el("button", { type: "button", class: "secondary", text: "Quiz", "aria-label": `Quiz of ${d.filename}`,
            onclick: () => openQuiz(d.id) }),
        );
      }
      const facts = [d.status, d.pages ? `${d.pages} pages` : "", d.error || ""].filter(Boolean).join(" · ");
      return el("li", {}, el("span", {}, el("strong", { text: d.filename }), " ", el("span", { class: "hint", text: facts })),
        actions);
    }),
  );
}

function upload(files, retried = false) {
  const pdfs = [...files].filter((f) => f.type === "application/pdf" || f.name.toLowerCase().endsWith(".pdf"));
  if (!state.course) return say("Choose or create a course first.", true);
  if (!pdfs.length) return say("Only PDF files can be uploaded.", true);
  const form = new FormData();
  for (const file of pdfs) form.append("files", file, file.name);
  const row = progressRow(`upload-${Date.now()}`, `${pdfs.length} file(s)`);
  renderProgress(row, { stage: "uploading", done: 0, total: 1 });
  const request = new XMLHttpRequest();
  request.open("POST", `/v1/courses/${state.course.id}/documents`);
  request.setRequestHeader("Authorization", `Bearer ${state.access}`);
  request.upload.onprogress = (event) => {
    if (event.lengthComputable) renderProgress(row, { stage: "uploading", done: event.loaded, total: event.total });
  };
  request.onerror = () => renderProgress(row, { stage: "failed", error: "the upload did not reach the server" });
  request.onload = async () => {
    if (request.status === 401 && !retried && state.refresh) {
      row.remove();
      if (await refreshTokens()) upload(files, true); // the access token expired: once more with a new one
      return;
    }
    let data = null;
    try { data = JSON.parse(request.responseText); } catch { /* not JSON */ }
    if (request.status !== 202) {
      return renderProgress(row, { stage: "failed", error: (data && data.detail) || `answered ${request.status}` });
    }
    row.remove();
    for (const item of data.jobs) {
      if (item.job_id) track(item.job_id, item.filename);
      else say(`${item.filename} was already uploaded to this course.`);
    }
    loadDocuments();
  };
  request.send(form);
}

const STAGE = { queued: "queued", running: "processing", succeeded: "indexed", failed: "failed" };
const GENERATION = { queued: "queued", running: "generating", succeeded: "ready", failed: "failed" };

function progressRow(key, label) {
  let row = document.querySelector(`[data-key="${key}"]`);
  if (!row) {
    row = el("li", { "data-key": key },
      el("div", {}, el("strong", { class: "name", text: label }), " — ", el("span", { class: "stage" })),
      el("progress", { max: "100", value: "0", "aria-label": `Progress of ${label}` }),
      el("div", { class: "hint detail" }));
    $("progress").prepend(row);
  }
  return row;
}

function renderProgress(row, { stage, done = 0, total = null, eta = null, error = null }) {
  const percent = total ? Math.min(100, Math.round((100 * done) / total)) : stage === "indexed" ? 100 : 0;
  const stageNode = row.querySelector(".stage");
  stageNode.textContent = `${stage}${total ? ` ${percent}%` : ""}`;
  stageNode.className = `stage ${stage}`;
  row.querySelector("progress").value = percent;
  const working = stage !== "indexed" && stage !== "ready" && stage !== "failed";
  const detail = error || [total && stage !== "uploading" ? `${done} of ${total} pages` : "", working ? duration(eta) : ""]
    .filter(Boolean).join(" · ");
  row.querySelector(".detail").textContent = detail;
}

function track(jobId, label, onDone) {
  const entry = state.jobs.get(jobId) || {};
  Object.assign(entry, { label, onDone: onDone || entry.onDone });
  state.jobs.set(jobId, entry);
  // The WebSocket may have shown the job before the upload answered: name its row properly.
  progressRow(jobId, label).querySelector(".name").textContent = label;
  return entry;
}

function showJob(job) {
  const jobId = job.job_id || job.id;
  if (!state.jobs.has(jobId)) {
    // An open job of this user from an earlier visit (the snapshot): show it too.
    if (job.status !== "queued" && job.status !== "running") return;
    const document_ = state.documents.get(job.document_id);
    track(jobId, document_ ? `${job.kind === "ingest_document" ? "" : `${job.kind}: `}${document_.filename}` : job.kind);
  }
  const tracked = state.jobs.get(jobId);
  const stage = job.kind === "notes" || job.kind === "quiz" ? GENERATION[job.status] : STAGE[job.status];
  renderProgress(progressRow(jobId, tracked.label), {
    stage, done: job.pages_done, total: job.pages_total, eta: job.eta_s, error: job.error,
  });
  if ((job.status === "succeeded" || job.status === "failed") && !tracked.finished) {
    tracked.finished = true;
    loadDocuments();
    if (tracked.onDone) tracked.onDone(job);
  }
}

// ---- live progress: the notifications WebSocket, reconnected with backoff ------------------------
function connect() {
  if (!state.access) return;
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/v1/notifications?access_token=${encodeURIComponent(state.access)}`);
  state.socket = socket;
  let pinger = null;
  socket.onopen = () => {
    state.retry = 0;
    document.body.dataset.live = "connected";
    pinger = setInterval(() => socket.readyState === WebSocket.OPEN && socket.send("ping"), 25000);
    refetchJobs(); // whatever finished while we were away is not in the snapshot
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "snapshot") message.jobs.forEach(showJob);
    else if (message.type === "job") showJob(message.job);
  };
  socket.onclose = async (event) => {
    clearInterval(pinger);
    document.body.dataset.live = "disconnected";
    if (state.socket !== socket || !state.access) return; // signed out or replaced
    if (event.code === 4401 && !(await refreshTokens())) return;
    const delay = Math.min(15000, 500 * 2 ** state.retry) * (0.75 + Math.random() / 2);
    state.retry += 1;
    setTimeout(connect, delay);
  };
}

async function refetchJobs() {
  for (const [jobId, entry] of state.jobs) {
    if (entry.finished) continue;
    const result = await api(`/v1/jobs/${jobId}`);
    if (result.ok) showJob({ ...result.data, job_id: jobId });
  }
}

// ---- search ------------------------------------------------------------------------------------
const EXCERPT = 320; // characters of a passage shown around its first match

function highlighted(text, query) {
  const terms = query.split(/\s+/).filter((t) => t.length > 1).map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  const node = el("p");
  if (!terms.length) {
    node.textContent = text.length > EXCERPT ? `${text.slice(0, EXCERPT)}…` : text;
    return node;
  }
  const pattern = new RegExp(`(${terms.join("|")})`, "gi");
  if (text.length > EXCERPT) {
    const first = text.search(pattern);
    const from = Math.max(0, (first < 0 ? 0 : first) - EXCERPT / 3);
    text = `${from > 0 ? "…" : ""}${text.slice(from, from + EXCERPT)}${from + EXCERPT < text.length ? "…" : ""}`;
  }
  text.split(pattern).forEach((part, index) => node.append(index % 2 ? el("mark", { text: part }) : part));
  return node;
}

async function search(query) {
  const result = await api(`/v1/courses/${state.course.id}/search?q=${encodeURIComponent(query)}&k=10`);
  if (!result.ok) return say(problem(result), true);
  const hits = result.data.hits;
  $("search-count").textContent = hits.length ? `${hits.length} passages found.` : "Nothing found.";
  $("hits").replaceChildren(
    ...hits.map((hit) => {
      const document_ = state.documents.get(hit.document_id);
      return el("li", {},
        el("span", { class: "page", text: pages(hit.page_start, hit.page_end) }),
        el("span", { class: "hint", text: document_ ? document_.filename : "" }),
        highlighted(hit.text, query));
    }),
  );
}

// ---- study: notes, quiz, flashcards (shown when their endpoints answer) ----------------------------
async function study(kind, documentId, render) {
  const panel = $(`${kind}-panel`);
  const box = kind === "notes" ? $("notes") : $("quiz-result");
  const name = (state.documents.get(documentId) || {}).filename || "document";
  const result = await api(`/v1/documents/${documentId}/${kind}`);
  if (result.status === 404 || result.status === 405) {
    panel.hidden = true;
    return say(`No ${kind} are available for ${name}.`);
  }
  panel.hidden = false;
  if (result.status === 200) return render(result.data);
  if (!result.ok && result.status !== 202) return say(problem(result), true);
  const ask = el("button", { type: "button", text: `Generate the ${kind} of ${name}`, onclick: async () => {
    ask.disabled = true;
    const requested = await api(`/v1/documents/${documentId}/${kind}`, { method: "POST" });
    if (requested.status === 200) return study(kind, documentId, render);
    if (requested.status !== 202) {
      ask.disabled = false;
      return say(problem(requested), true);
    }
    say(`Generating the ${kind} of ${name}; progress is shown under Processing.`);
    track(requested.data.job.id, `${kind}: ${name}`, (job) => {
      if (job.status === "succeeded") study(kind, documentId, render);
      if (kind === "quiz") loadCards();
    });
    showJob({ ...requested.data.job, job_id: requested.data.job.id });
  } });
  box.replaceChildren(el("p", { text: `The ${kind} of ${name} are not generated yet.` }), ask);
  if (kind === "quiz") $("quiz").replaceChildren();
}

function openNotes(documentId) {
  return study("notes", documentId, (notes) => {
    const cited = (sentence) => el("li", {}, sentence.text, " ",
      el("span", { class: "cite", text: `(p. ${sentence.pages.join(", ")})` }));
    $("notes").replaceChildren(
      el("h3", { text: "Overview" }), el("ul", {}, ...notes.overview.map(cited)),
      ...notes.sections.flatMap((s) => [
        el("h3", { text: `${s.section.title} (${pages(s.section.page_start, s.section.page_end)})` }),
        el("ul", {}, ...s.sentences.map(cited)),
      ]),
      el("h3", { text: "Key terms" }),
      el("dl", {}, ...notes.key_terms.flatMap((k) => [el("dt", { text: k.term }), el("dd", {}, cited(k.definition))])),
    );
    $("notes-panel").scrollIntoView();
  });
}

function openQuiz(documentId) {
  return study("quiz", documentId, (quiz) => {
    $("quiz-result").replaceChildren();
    const form = $("quiz");
    form.replaceChildren(
      ...quiz.items.map((item, index) => el("fieldset", {},
        el("legend", { text: `${index + 1}. ${item.question} (p. ${item.page})` }),
        ...item.options.map((option) => el("label", {},
          el("input", { type: "radio", name: item.item_id, value: option.option_id, required: "" }), option.text)))),
      el("button", { type: "submit", text: "Submit answers" }),
    );
    form.onsubmit = async (event) => {
      event.preventDefault();
      const answers = quiz.items.map((item) => {
        const chosen = form.querySelector(`input[name="${CSS.escape(item.item_id)}"]:checked`);
        return chosen ? { item_id: item.item_id, option_id: chosen.value } : null;
      }).filter(Boolean);
      if (!answers.length) return say("Answer at least one question.", true);
      const graded = await api(`/v1/quizzes/${quiz.quiz_id}/attempts`, {
        method: "POST", body: { attempt_id: crypto.randomUUID(), answers },
      });
      if (!graded.ok) return say(problem(graded), true);
      const options = new Map(quiz.items.flatMap((i) => i.options.map((o) => [o.option_id, o.text])));
      $("quiz-result").replaceChildren(
        el("p", { class: "score", text: `Score: ${graded.data.score} / ${graded.data.max_score}` }),
        el("ol", {}, ...graded.data.items.map((g) => el("li", {},
          el("span", { class: g.correct ? "right" : "wrong", text: g.correct ? "Right. " : "Wrong. " }),
          `Answer: ${options.get(g.correct_option_id) || g.correct_option_id}. ${g.explanation} `,
          el("span", { class: "cite", text: `(p. ${g.page})` })))),
      );
      $("quiz-result").focus();
      loadCards();
    };
    $("quiz-panel").scrollIntoView();
  });
}

async function loadCards() {
  if (!state.course) return;
  const result = await api(`/v1/courses/${state.course.id}/reviews/due?limit=20`);
  const panel = $("cards-panel");
  if (!result.ok || !result.data.total) {
    panel.hidden = true;
    return;
  }
  panel.hidden = false;
  showCard(result.data.cards, result.data.due);
}

function showCard(cards, due) {
  const box = $("cards");
  if (!cards.length) return box.replaceChildren(el("p", { text: "No card is due now. Well done." }));
  const [card, ...rest] = cards;
  const back = el("div", { class: "back", hidden: "" }, el("p", { text: card.back }),
    el("span", { class: "cite", text: `p. ${card.page}` }),
    el("div", { class: "ratings" }, ...["again", "hard", "good", "easy"].map((rating) => el("button", {
      type: "button", text: rating, onclick: async () => {
        const result = await api(`/v1/cards/${card.card_id}/reviews`, {
          method: "POST", body: { rating, review_id: crypto.randomUUID() },
        });
        if (!result.ok) return say(problem(result), true);
        showCard(rest, due - 1);
      } }))));
  const reveal = el("button", { type: "button", text: "Show answer", onclick: () => {
    back.hidden = false;
    reveal.hidden = true;
    back.querySelector("button").focus();
  } });
  box.replaceChildren(el("p", { class: "hint", text: `${due} card(s) due` }),
    el("div", { class: "flashcard" }, el("p", {}, el("strong", { text: card.front })), reveal, back));
}

// ---- wiring ------------------------------------------------------------------------------------
function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

function wire() {
  $("sign-in").addEventListener("submit", (event) => {
    event.preventDefault();
    const { email, password } = formValues(event.target);
    signIn(email, password);
  });
  $("sign-up").addEventListener("submit", async (event) => {
    event.preventDefault();
    const values = formValues(event.target);
    const result = await api("/v1/auth/signup", { method: "POST", body: values });
    if (!result.ok) return say(problem(result), true);
    await signIn(values.email, values.password);
  });
  $("sign-out").addEventListener("click", () => signOut());
  $("course-select").addEventListener("change", (event) => selectCourse(event.target.value));
  $("create-course").addEventListener("submit", async (event) => {
    event.preventDefault();
    const result = await api("/v1/courses", { method: "POST", body: { title: formValues(event.target).title } });
    if (!result.ok) return say(problem(result), true);
    event.target.reset();
    say(`Course created. Its join code is ${result.data.join_code}.`);
    await loadCourses(result.data.id);
  });
  $("join-course").addEventListener("submit", async (event) => {
    event.preventDefault();
    const code = formValues(event.target).join_code.trim().toUpperCase();
    const result = await api("/v1/courses/join", { method: "POST", body: { join_code: code } });
    if (!result.ok) return say(problem(result), true);
    event.target.reset();
    say(`Joined ${result.data.title}.`);
    await loadCourses(result.data.id);
  });
  const drop = $("drop");
  drop.addEventListener("click", () => $("file-input").click());
  drop.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      $("file-input").click();
    }
  });
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    upload(event.dataTransfer.files);
  });
  $("file-input").addEventListener("change", (event) => {
    upload(event.target.files);
    event.target.value = "";
  });
  $("search").addEventListener("submit", (event) => {
    event.preventDefault();
    search(formValues(event.target).q);
  });
  if (state.access) start();
}

wire();
