"""Modal dialogs: key help, yes/no confirmation, and a one-line prompt."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

HELP_TEXT = """\
[b]Rooms screen[/b]
  enter      join the selected room
  n          create a new room
  d          delete the selected room (owner only; asks first)
  r          refresh the list
  c / esc    back to your open rooms

[b]Chat screen[/b]
  enter          send the message
  ↑ (empty line) edit your last message; esc cancels
  ctrl+n/ctrl+p  next / previous room
  alt+1 … alt+9  jump to room 1 … 9
  pgup / pgdn    scroll; pgup at the top loads older messages
  ctrl+r         rooms screen
  ctrl+l         close this room's tab (stay a member)
  commands:      /join NAME  /create NAME  /leave  /delete
                 /dm USER  /invite USER  /edit TEXT  /unsend [#SEQ]
                 /react EMOJI [#SEQ]  /unreact EMOJI [#SEQ]
                 /rooms  /help  /quit   (start with // to send a "/")

[b]Everywhere[/b]
  f1 or ?    this help          ctrl+q    quit

Unread counts appear in the tab titles. The client reconnects by itself
and resumes every room where it left off: nothing missed, nothing twice.
"""


class HelpScreen(ModalScreen[None]):
    """The key reference."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll {
        width: 78; max-width: 100%; height: auto; max-height: 100%;
        border: round $primary; background: $surface; padding: 0 1;
    }
    HelpScreen Static { width: 1fr; height: auto; }
    """
    BINDINGS = [
        Binding("escape,q,f1,question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static("[b]Parley — keys[/b]\n")
            yield Static(HELP_TEXT)
            yield Static("[dim]esc to close[/dim]")


class ConfirmScreen(ModalScreen[bool]):
    """Ask a yes/no question; dismisses with True for yes."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > Vertical {
        width: 60; max-width: 95%; height: auto;
        border: thick $error; background: $surface; padding: 1 2;
    }
    ConfirmScreen Horizontal { height: auto; align-horizontal: right; margin-top: 1; }
    ConfirmScreen Button { margin-left: 2; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes_label: str = "Yes") -> None:
        super().__init__()
        self.question = question
        self.yes_label = yes_label

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            with Horizontal():
                yield Button("No", id="no")
                yield Button(self.yes_label, id="yes", variant="error")

    def on_mount(self) -> None:
        """Focus "No": the safe answer is the default."""
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        """Answer with the pressed button."""
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Answer from a key."""
        self.dismiss(yes)


class PromptScreen(ModalScreen[str | None]):
    """Ask for one line of text; dismisses with it, or None when cancelled."""

    DEFAULT_CSS = """
    PromptScreen { align: center middle; }
    PromptScreen > Vertical {
        width: 60; max-width: 95%; height: auto;
        border: round $primary; background: $surface; padding: 1 2;
    }
    PromptScreen #prompt-error { color: $error; height: auto; }
    """
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        question: str,
        placeholder: str = "",
        validate: Callable[[str], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.question = question
        self.placeholder = placeholder
        self.check = validate

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(self.question)
            yield Input(placeholder=self.placeholder, id="prompt-input")
            yield Static("", id="prompt-error")
            yield Static("[dim]enter to confirm · esc to cancel[/dim]")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        """Validate and return the answer."""
        value = event.value.strip()
        problem = self.check(value) if self.check else None
        if problem:
            self.query_one("#prompt-error", Static).update(problem)
            return
        self.dismiss(value or None)

    def action_cancel(self) -> None:
        """Close without an answer."""
        self.dismiss(None)
