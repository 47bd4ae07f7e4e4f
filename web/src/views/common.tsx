/** @jsxRuntime automatic @jsxImportSource preact */
import { useEffect, useState } from 'preact/hooks';

/**
 * A button for an action that cannot be undone: the first click asks, the second (within five seconds)
 * acts. Disabled, with the reason as its title, for a read-only login.
 */
export function ConfirmButton(props: {
  label: string;
  confirm: string;
  disabled?: string | undefined;
  testId: string;
  onConfirm: () => Promise<void>;
}) {
  const [armed, setArmed] = useState(false);
  const [busy, setBusy] = useState(false);
  useEffect(() => {
    if (!armed) return;
    const t = setTimeout(() => setArmed(false), 5000);
    return () => clearTimeout(t);
  }, [armed]);
  const click = async () => {
    if (!armed) {
      setArmed(true);
      return;
    }
    setBusy(true);
    try {
      await props.onConfirm();
    } finally {
      setBusy(false);
      setArmed(false);
    }
  };
  return (
    <button
      type="button"
      class={armed ? 'danger armed' : 'danger'}
      data-testid={props.testId}
      disabled={props.disabled !== undefined || busy}
      title={props.disabled}
      onClick={click}
    >
      {armed ? props.confirm : props.label}
    </button>
  );
}

export const READ_ONLY = 'your login is read-only: only an admin login can do this';

export function Status(props: { value: string }) {
  const good = props.value === 'active' || props.value === 'allowed';
  const warn = props.value === 'expired' || props.value === 'not-yet-valid' || props.value === 'failed';
  return <span class={`status ${good ? 'ok' : warn ? 'warn' : 'bad'}`}>{props.value}</span>;
}

/** The outcome of the last action, shown beside the controls. */
export function Notice(props: { text: string | undefined }) {
  return props.text === undefined ? null : (
    <p class="notice" role="status" data-testid="notice">
      {props.text}
    </p>
  );
}
