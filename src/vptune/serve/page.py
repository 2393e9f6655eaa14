"""The page at `/`: the task list, and a drop zone per task that shows its top 5 as bars.

Plain HTML and vanilla JavaScript in one string, so there is no build step and no static
files to install.
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>vptune serve</title>
<style>
 body { font: 15px/1.4 system-ui, sans-serif; max-width: 52rem; margin: 2rem auto; padding: 0 1rem; }
 .task { border: 1px solid #ccc; border-radius: 6px; padding: .8rem 1rem; margin: .8rem 0; }
 .task h2 { font-size: 1.05rem; margin: 0 0 .3rem; }
 .meta { color: #666; font-size: .85rem; }
 .drop { display: block; cursor: pointer; border: 2px dashed #aaa; border-radius: 6px; padding: .8rem; margin-top: .5rem; text-align: center; }
 .drop.over { border-color: #06c; background: #eef5ff; }
 .row { display: flex; align-items: center; gap: .5rem; margin: .2rem 0; }
 .label { width: 12rem; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
 .bar { background: #3b82f6; height: 1rem; border-radius: 3px; min-width: 2px; }
 .error { color: #b00; }
</style>
</head>
<body>
<h1>vptune serve</h1>
<p>Drop an image on a task (or choose a file) to see its five most likely classes.
 API: <a href="/docs">/docs</a></p>
<div id="tasks">Loading tasks…</div>
<script>
async function loadTasks() {
  const box = document.getElementById("tasks");
  const response = await fetch("/v1/tasks");
  const body = await response.json();
  box.textContent = "";
  if (!body.tasks || body.tasks.length === 0) { box.textContent = "No tasks loaded."; return; }
  for (const task of body.tasks) box.appendChild(taskCard(task));
}

function taskCard(task) {
  const card = document.createElement("section");
  card.className = "task";
  card.dataset.task = task.name;
  const title = document.createElement("h2");
  title.textContent = task.name;
  const meta = document.createElement("div");
  meta.className = "meta";
  meta.textContent = `${task.method}, ${task.classes} classes, ${task.bytes.toLocaleString()} bytes`;
  const drop = document.createElement("label");
  drop.className = "drop";
  drop.textContent = "Drop an image here or click to choose one";
  const input = document.createElement("input");
  input.type = "file";
  input.accept = "image/*";
  input.hidden = true;
  drop.appendChild(input);
  const result = document.createElement("div");
  result.className = "result";
  input.addEventListener("change", () => { if (input.files.length) predict(task.name, input.files[0], result); });
  drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    if (event.dataTransfer.files.length) predict(task.name, event.dataTransfer.files[0], result);
  });
  card.append(title, meta, drop, result);
  return card;
}

async function predict(task, file, result) {
  result.textContent = "…";
  const form = new FormData();
  form.append("image", file);
  const response = await fetch(`/v1/tasks/${encodeURIComponent(task)}/predict?top_k=5`, { method: "POST", body: form });
  const body = await response.json();
  result.textContent = "";
  if (!response.ok) {
    const error = document.createElement("div");
    error.className = "error";
    error.textContent = body.error || response.statusText;
    result.appendChild(error);
    return;
  }
  for (const prediction of body.predictions) {
    const row = document.createElement("div");
    row.className = "row";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = prediction.label;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(prediction.score * 20).toFixed(2)}rem`;
    bar.title = prediction.score.toFixed(3);
    const score = document.createElement("span");
    score.textContent = prediction.score.toFixed(3);
    row.append(label, bar, score);
    result.appendChild(row);
  }
}

loadTasks().catch((error) => { document.getElementById("tasks").textContent = `Cannot list tasks: ${error}`; });
</script>
</body>
</html>
"""
