// gemini-annotate's one App-side operator, loaded by the FiftyOne App as this plugin's JS bundle.
//
// A review operator changes labels in the database. `reload_samples` and `reload_dataset` make the
// grid fetch them again, but the App keeps each sample it opened in the modal (the Relay record
// "<sample id>-modal") and shows that copy again when the sample is reopened: a label rejected a
// moment ago still said "unreviewed" until a page reload. This operator writes the new attribute
// values into those copies, as the App's own label tagging does for its changes.
// Plain JavaScript on the globals the App gives plugins (no build step).
(function () {
  const operators = window.__foo__;
  const state = window.__fos__;
  if (!operators || !state) {
    return;
  }

  function labelId(value) {
    const id = value._id !== undefined ? value._id : value.id;
    return id && typeof id === "object" ? id.$oid : id;
  }

  // Sets attributes on every label of `sample` whose id `changes` names ({label id: {attribute: value}}).
  function patch(value, changes) {
    if (Array.isArray(value)) {
      value.forEach((item) => patch(item, changes));
    } else if (value && typeof value === "object") {
      const update = changes[labelId(value)];
      if (update) {
        Object.assign(value, update);
      }
      Object.values(value).forEach((item) => patch(item, changes));
    }
  }

  class UpdateModalSamples extends operators.Operator {
    get config() {
      return new operators.OperatorConfig({
        name: "update_modal_samples",
        label: "Update the App's copies of reviewed samples",
        unlisted: true,
      });
    }

    async execute({ params }) {
      const environment = state.getCurrentEnvironment();
      const samples = (params && params.samples) || {};
      environment.commitUpdate((store) => {
        for (const [sampleId, changes] of Object.entries(samples)) {
          for (const key of [`${sampleId}-modal`, sampleId]) {
            const record = store.get(key);
            const stored = record && record.getValue("sample");
            if (!stored) {
              continue;
            }
            try {
              const sample = JSON.parse(typeof stored === "string" ? stored : JSON.stringify(stored));
              patch(sample, changes);
              // stored as JSON text, as the App's own sample updates store it
              record.setValue(JSON.stringify(sample), "sample");
            } catch (error) {
              console.error(`gemini-annotate: could not update the App's copy of ${key}`, error);
            }
          }
        }
      });
    }
  }

  operators.registerOperator(UpdateModalSamples, "@gemini-annotate/gemini-annotate");
})();
