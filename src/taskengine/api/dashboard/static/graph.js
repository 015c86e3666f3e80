// The workflow graph of the task dialog: every task of the task's workflow as a box (a dot in
// a large one) in columns by depth, parents left of their children, an edge per dependency,
// coloured by state. Built with SVG elements and attributes only (the CSP allows no inline
// style); text reaches the page through textContent.

const SVG = "http://www.w3.org/2000/svg";
const BOX = { w: 132, h: 22, gapX: 36, gapY: 8 }; // up to COMPACT nodes: labelled boxes
const DOT = { w: 12, h: 12, gapX: 30, gapY: 4 }; // past it: dots, the name in a tooltip
const COMPACT = 40;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Columns by depth: a node sits one column right of its deepest parent in the workflow. */
export function layout(nodes) {
  const depth = new Map();
  for (const node of nodes) { // parents first (as GET /api/workflows answers)
    let d = 0;
    for (const parent of node.depends_on) {
      if (depth.has(parent)) d = Math.max(d, depth.get(parent) + 1);
    }
    depth.set(node.id, d);
  }
  const columns = [];
  for (const node of nodes) {
    const d = depth.get(node.id);
    (columns[d] ??= []).push(node);
  }
  return columns;
}

/** Draw `workflow` into the <svg> `target`; `current` is outlined; `onPick(id)` on a click. */
export function drawWorkflow(target, workflow, current, onPick) {
  const size = workflow.nodes.length > COMPACT ? DOT : BOX;
  const columns = layout(workflow.nodes);
  const at = new Map();
  columns.forEach((column, x) => {
    column.forEach((node, y) => {
      at.set(node.id, { x: x * (size.w + size.gapX) + 4, y: y * (size.h + size.gapY) + 4 });
    });
  });
  const rows = Math.max(...columns.map((c) => c.length));
  const width = columns.length * (size.w + size.gapX) + 8;
  const height = rows * (size.h + size.gapY) + 8;
  target.setAttribute("viewBox", `0 0 ${width} ${height}`);
  target.setAttribute("width", width);
  target.setAttribute("height", height);
  const edges = svg("g", { class: "wf-edges" });
  for (const [parent, child] of workflow.edges) {
    const from = at.get(parent);
    const to = at.get(child);
    if (!from || !to) continue;
    edges.append(svg("line", {
      x1: from.x + size.w, y1: from.y + size.h / 2, x2: to.x, y2: to.y + size.h / 2,
    }));
  }
  const boxes = svg("g", { class: "wf-nodes" });
  for (const node of workflow.nodes) {
    const { x, y } = at.get(node.id);
    const group = svg("g", { class: `wf-node state-${node.state}${node.id === current ? " current" : ""}` });
    group.append(svg("title", {}, `${node.type} · ${node.state} · ${node.id}${node.error ? `\n${node.error}` : ""}`));
    group.append(svg("rect", { x, y, width: size.w, height: size.h, rx: size === DOT ? 6 : 4 }));
    if (size === BOX) {
      const label = node.type.length > 17 ? `${node.type.slice(0, 16)}…` : node.type;
      group.append(svg("text", { x: x + 6, y: y + 15 }, label));
    }
    group.addEventListener("click", () => onPick(node.id));
    boxes.append(group);
  }
  target.replaceChildren(edges, boxes);
}
