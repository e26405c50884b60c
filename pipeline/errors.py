"""One error type for everything a user can fix: it names the thing and the fix."""


class InspectflowError(Exception):
    def __init__(self, what: str, fix: str | None = None):
        self.what, self.fix = what, fix
        super().__init__(f"{what}\n  fix: {fix}" if fix else what)


class ConfigError(InspectflowError):
    pass


class SourceError(InspectflowError):
    pass


class WeightsError(InspectflowError):
    pass
