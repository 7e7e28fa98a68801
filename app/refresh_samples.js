// gemini-annotate's one App-side operator, loaded by the FiftyOne App as this plugin's JS bundle.
//
// A review operator changes labels in the database. `reload_samples` and `reload_dataset` make the
// grid fetch them again, but the App keeps each sample it opened in the modal (the Relay record
// "<id>-modal") and shows that copy again when the sample is reopened, so a label rejected a moment
// ago still said "unreviewed" until a page reload. This operator drops those copies, so the modal
// asks the server again. Plain JavaScript on the globals the App exposes to plugins (no build step).
(function () {
  const operators = window.__foo__;
  const state = window.__fos__;
  if (!operators || !state) {
    return;
  }

  class ForgetModalSamples extends operators.Operator {
    get config() {
      return new operators.OperatorConfig({
        name: "forget_modal_samples",
        label: "Forget the App's copies of samples opened in the modal",
        unlisted: true,
      });
    }

    async execute({ params }) {
      const environment = state.getCurrentEnvironment();
      const ids = (params && params.sample_ids) || [];
      environment.commitUpdate((store) => {
        for (const id of ids) {
          const record = store.get(`${id}-modal`);
          if (record) {
            record.invalidateRecord();
          }
          store.delete(`${id}-modal`);
        }
      });
    }
  }

  operators.registerOperator(ForgetModalSamples, "@gemini-annotate/gemini-annotate");
})();
