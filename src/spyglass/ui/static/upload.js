// Choosing a photo three ways: the file picker, dropping a file, pasting from the clipboard.

import { h, uid } from './dom.js';

/**
 * A drop zone with a file input. `onFile(file)` is called with the chosen image.
 * Paste works anywhere on the page while the zone is mounted (destroy() stops it).
 */
export function imagePicker({
  label = 'Photo to search with',
  onFile,
  preview: showPreview = true,
}) {
  const input = h('input', {
    type: 'file',
    accept: 'image/jpeg,image/png,image/webp,image/gif',
    id: uid('file'),
    class: 'file',
  });
  const preview = h('img', { class: 'preview', alt: 'The chosen photo', hidden: true });
  const zone = h(
    'div',
    { class: 'dropzone' },
    h('label', { for: input.id }, label),
    input,
    h('p', { class: 'hint' }, 'Choose a file, drop one here, or paste an image (Ctrl+V / ⌘V).'),
    preview,
  );
  let url = null;

  function take(file) {
    if (!file) return;
    if (!file.type.startsWith('image/')) return;
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(file);
    preview.src = url;
    preview.hidden = !showPreview;
    onFile(file);
  }

  input.addEventListener('change', () => take(input.files[0]));
  zone.addEventListener('dragover', (event) => {
    event.preventDefault();
    zone.classList.add('over');
  });
  zone.addEventListener('dragleave', () => zone.classList.remove('over'));
  zone.addEventListener('drop', (event) => {
    event.preventDefault();
    zone.classList.remove('over');
    take([...(event.dataTransfer?.files ?? [])].find((f) => f.type.startsWith('image/')));
  });
  function paste(event) {
    const item = [...(event.clipboardData?.items ?? [])].find(
      (i) => i.kind === 'file' && i.type.startsWith('image/'),
    );
    if (!item) return;
    event.preventDefault();
    take(item.getAsFile());
  }
  document.addEventListener('paste', paste);

  return {
    element: zone,
    input,
    destroy() {
      document.removeEventListener('paste', paste);
      if (url) URL.revokeObjectURL(url);
    },
  };
}
