// Documents: drop files onto the drop zone to put them in the upload form's file field.
const zone = document.getElementById("dropzone");
const input = document.getElementById("files");

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
