"""One error type for bad input, so batch jobs can record an exclusion and go on.

Every message names the patient (when known), the file, the problem and, where there is one,
the fix: "patient lung1-007: mask is empty (images/lung1-007_gtv.nii.gz). Fix: ..."
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input for one patient (or one file). Batch jobs catch it, record it and continue."""

    def __init__(self, problem: str, patient_id: str | None = None, path: str | None = None,
                 fix: str | None = None):
        self.problem = problem
        self.patient_id = patient_id
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self._message())

    def _message(self) -> str:
        who = f"patient {self.patient_id}: " if self.patient_id else ""
        where = f" ({self.path})" if self.path else ""
        fix = f". Fix: {self.fix}" if self.fix else ""
        return f"{who}{self.problem}{where}{fix}"

    def with_patient(self, patient_id: str) -> "InputError":
        """The same error, now naming the patient (for lower layers that only knew the file)."""
        if self.patient_id:
            return self
        return InputError(self.problem, patient_id=patient_id, path=self.path, fix=self.fix)


def input_error_in(exc: BaseException | None) -> InputError | None:
    """The InputError behind `exc`, if any: MONAI's Compose and DataLoader wrap transform errors
    (RuntimeError, chained), so batch jobs follow the cause/context chain (at most 10 links)."""
    seen = 0
    while exc is not None and seen < 10:
        if isinstance(exc, InputError):
            return exc
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return None
