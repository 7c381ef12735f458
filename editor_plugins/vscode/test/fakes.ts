// A stand-in for VS Code's QuickPick (the one part of the VS Code API the picker touches).

import type { Disposable, QuickPickLike } from "../src/search";

type Listener<T> = (value: T) => unknown;

class Emitter<T> {
  private listeners: Listener<T>[] = [];
  event = (listener: Listener<T>): Disposable => {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  };
  fire(value: T): void {
    for (const l of [...this.listeners]) {
      l(value);
    }
  }
  get size(): number {
    return this.listeners.length;
  }
}

export class FakeQuickPick<T> implements QuickPickLike<T> {
  private _value = "";
  private _items: readonly T[] = [];
  activeItems: readonly T[] = [];
  selectedItems: readonly T[] = [];
  placeholder: string | undefined;
  title: string | undefined;
  busy = false;
  matchOnDescription = true;
  matchOnDetail = true;
  sortByLabel = true;
  visible = false;
  disposed = false;
  readonly valueEmitter = new Emitter<string>();
  readonly activeEmitter = new Emitter<readonly T[]>();
  readonly acceptEmitter = new Emitter<void>();
  readonly hideEmitter = new Emitter<void>();
  onDidChangeValue = this.valueEmitter.event;
  onDidChangeActive = this.activeEmitter.event;
  onDidAccept = this.acceptEmitter.event as (l: () => unknown) => Disposable;
  onDidHide = this.hideEmitter.event as (l: () => unknown) => Disposable;

  get value(): string {
    return this._value;
  }
  set value(v: string) {
    this._value = v;
  }
  get items(): readonly T[] {
    return this._items;
  }
  set items(items: readonly T[]) {
    // Like VS Code: new items make the first one active.
    this._items = items;
    this.activeItems = items.slice(0, 1);
    if (items.length) {
      this.activeEmitter.fire(this.activeItems);
    }
  }

  /** The user types `text`. */
  type(text: string): void {
    this._value = text;
    this.valueEmitter.fire(text);
  }
  /** The user moves the highlight to row `i`. */
  highlight(i: number): void {
    this.activeItems = [this._items[i]];
    this.activeEmitter.fire(this.activeItems);
  }
  /** The user presses Enter. */
  accept(): void {
    this.selectedItems = this.activeItems;
    this.acceptEmitter.fire();
  }
  show(): void {
    this.visible = true;
  }
  hide(): void {
    if (this.visible) {
      this.visible = false;
      this.hideEmitter.fire();
    }
  }
  dispose(): void {
    this.disposed = true;
  }
  get listenerCount(): number {
    return this.valueEmitter.size + this.activeEmitter.size + this.acceptEmitter.size + this.hideEmitter.size;
  }
}
