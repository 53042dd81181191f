// Drives the annotation page (src/codeloop/annotate/page.html) as a person would, in jsdom, against a
// running codeloop annotation server; prints what it saw and did as one JSON object on stdout.
//
//   node drive_page.mjs URL [NAME]
//
// URL: the page, with "#key=..." for a person's link. NAME: typed into the login box (typed names).
// On the k-th program shown (k from 0) it clicks line k % n wrong; on the first with more than one line, it
// also clicks another line twice (wrong, then correct again); it says "yes" to the whole program when k
// is even, "no" when odd.
import { JSDOM } from "jsdom";

const [url, name] = process.argv.slice(2);
const base = new URL(url);

const dom = await JSDOM.fromURL(url, {
  runScripts: "dangerously",
  pretendToBeVisual: true,
  beforeParse(window) {  // jsdom has no fetch: the page's calls go to the server through Node's
    window.fetch = (path, options) => fetch(new URL(path, base), options);
  },
});
const { window } = dom;
const doc = window.document;
const $ = (id) => doc.getElementById(id);
const hidden = (id) => $(id).classList.contains("hidden");

async function until(condition, what) {
  const deadline = Date.now() + 10000;
  while (!condition()) {
    if (Date.now() > deadline) {
      throw new Error("timed out waiting for " + what + "; #error says: " + JSON.stringify($("error").textContent));
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

const click = (element) => element.dispatchEvent(new window.MouseEvent("click", { bubbles: true }));
const seen = {
  hashAfterLoad: window.location.hash,
  storedKey: window.localStorage.getItem("codeloop-key"),
  steps: [],
};

if (name !== undefined) {
  $("name").value = name;
  click($("start"));
}
const started = Date.now();
await until(() => !hidden("work") || !hidden("finished") || $("error").textContent || Date.now() - started > 1000,
            "the first program");

for (let k = 0; !hidden("work"); k++) {
  const item = window.eval("current");
  const rows = [...$("lines").querySelectorAll(".line")];
  const n = rows.length;
  const step = {
    item,
    progress: $("progress").textContent,
    prompt: $("prompt").textContent,
    lines: rows.map((row) => row.querySelector("code").textContent),
    submitDisabledBeforeVerdict: $("submit").disabled,
    wrong: [k % n],
    verdict: k % 2 === 0 ? 1 : -1,
  };
  if (!seen.steps.some((s) => "toggled" in s) && n > 1) {  // the first program of more than one line
    step.toggled = (k + 1) % n;
    click(rows[step.toggled]);
    step.markAfterOneClick = rows[step.toggled].querySelector(".mark").textContent;
    click(rows[step.toggled]);
  }
  click(rows[k % n]);
  step.marks = rows.map((row) => row.querySelector(".mark").textContent);
  step.rowsMarkedWrong = rows.flatMap((row, j) => (row.classList.contains("wrong") ? [j] : []));
  const radio = doc.querySelector(`input[name=verdict][value="${step.verdict}"]`);
  radio.checked = true;
  radio.dispatchEvent(new window.Event("change", { bubbles: true }));
  step.submitDisabledAfterVerdict = $("submit").disabled;
  seen.steps.push(step);
  click($("submit"));
  await until(() => hidden("work") || window.eval("current") !== item || $("error").textContent, "the next program");
  if ($("error").textContent) break;
}

seen.finished = !hidden("finished");
seen.loginHidden = hidden("login");
seen.error = $("error").textContent;
seen.progress = $("progress").textContent;
seen.elementsFromProgramText = doc.querySelectorAll("#lines img, #lines script, #prompt img, #prompt b").length;
seen.injected = window.eval("typeof window.injected === 'undefined' ? null : window.injected");
process.stdout.write(JSON.stringify(seen) + "\n");
window.close();
