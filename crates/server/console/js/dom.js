// Building DOM nodes without innerHTML: every value from the API becomes a
// text node, so nothing a sandbox or a user named can inject markup.

/** h('a', {href: '#/x', class: 'y', onclick: fn}, 'text', child, ...) */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on') && typeof value === 'function') {
      el.addEventListener(name.slice(2), value);
    } else if (value === true) {
      el.setAttribute(name, '');
    } else {
      el.setAttribute(name, String(value));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replace the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

let nextId = 0;
/** A unique element id for label/input pairs. */
export function uid(prefix) {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/** A labelled form field: returns {wrap, input}. */
export function field(label, attrs = {}, hint) {
  const id = uid('f');
  const tag = attrs.tag || 'input';
  const { tag: _t, options, ...rest } = attrs;
  const input = h(tag, { id, name: rest.name || id, ...rest },
    ...(options || []).map(([value, text]) => h('option', { value }, text)));
  const hintId = hint ? uid('hint') : undefined;
  if (hintId) input.setAttribute('aria-describedby', hintId);
  const wrap = h('div', { class: 'field' },
    h('label', { for: id }, label), input,
    hint ? h('small', { id: hintId, class: 'hint' }, hint) : null);
  return { wrap, input };
}

/** A region that announces messages to screen readers. */
export function statusLine(cls = 'status') {
  return h('p', { class: cls, role: 'status', 'aria-live': 'polite' });
}

/** Show an API error (or clear with null) in `el`. */
export function showError(el, error) {
  if (!error) {
    replace(el);
    el.hidden = true;
    return;
  }
  el.hidden = false;
  replace(el, error.describe ? error.describe() : String(error.message || error));
}

/** An element that shows errors as the API returned them. */
export function errorBox() {
  const el = h('div', { class: 'error', role: 'alert' });
  el.hidden = true;
  return el;
}
