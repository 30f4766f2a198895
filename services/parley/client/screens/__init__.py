"""Screens of the chat app: connect, rooms, chat, and small modal dialogs."""
