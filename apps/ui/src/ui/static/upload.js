// Documents: drop files onto the drop zone to put them in the upload form's file field; a file
// over the size limit (the form's data-max-bytes, the server's UI_MAX_UPLOAD_BYTES) is named at
// once and the form is not sent.
const zone = document.getElementById("dropzone");
const input = document.getElementById("files");
const form = document.getElementById("upload");
const error = document.getElementById("files-error");

if (zone && input) {
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (event) => {
      event.preventDefault();
      zone.classList.add("over");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const files = new DataTransfer();
    for (const file of [...input.files, ...event.dataTransfer.files]) files.items.add(file);
    input.files = files.files;
    input.dispatchEvent(new Event("change"));
  });
}

if (form && input && error) {
  const limit = Number(form.dataset.maxBytes);
  input.addEventListener("change", () => {
    // The same words as the server's refusal (ui.pages.too_large).
    const over = [...input.files]
      .filter((file) => file.size > limit)
      .map(
        (file) =>
          `${file.name}: ${file.size.toLocaleString("en-US")} bytes is over the limit of ` +
          `${limit.toLocaleString("en-US")} bytes (${(limit / 2 ** 20).toFixed(1)} MiB) for one document`,
      );
    const message = over.join("; ");
    input.setCustomValidity(message);
    error.textContent = message;
    error.hidden = !message;
  });
}
