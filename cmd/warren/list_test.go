package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestAllPages(t *testing.T) {
	errDown := errors.New("agent gone")
	tests := []struct {
		name string
		// pages answers the page of a token: its items, next token, error.
		pages   map[string]func() ([]int, string, error)
		want    []int
		wantErr string
	}{
		{"one page (an agent without paging)", map[string]func() ([]int, string, error){
			"": func() ([]int, string, error) { return []int{1, 2}, "", nil },
		}, []int{1, 2}, ""},
		{"three pages", map[string]func() ([]int, string, error){
			"":   func() ([]int, string, error) { return []int{1}, "t1", nil },
			"t1": func() ([]int, string, error) { return []int{2, 3}, "t2", nil },
			"t2": func() ([]int, string, error) { return []int{4}, "", nil },
		}, []int{1, 2, 3, 4}, ""},
		{"error on the first page: as it is", map[string]func() ([]int, string, error){
			"": func() ([]int, string, error) { return nil, "", errDown },
		}, nil, "agent gone"},
		{"error on a later page: which page", map[string]func() ([]int, string, error){
			"":   func() ([]int, string, error) { return []int{1}, "t1", nil },
			"t1": func() ([]int, string, error) { return nil, "", errDown },
		}, nil, "list things, page 2: agent gone"},
		{"the same token again: stopped", map[string]func() ([]int, string, error){
			"":   func() ([]int, string, error) { return []int{1}, "t1", nil },
			"t1": func() ([]int, string, error) { return []int{2}, "t1", nil },
		}, nil, "keeps answering with another page after 2 pages"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := allPages(context.Background(), "things", func(_ context.Context, token string) ([]int, string, error) {
				page, ok := tt.pages[token]
				if !ok {
					t.Fatalf("asked for page token %q", token)
				}
				return page()
			})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				if !errors.Is(err, errDown) && strings.Contains(tt.wantErr, "agent gone") {
					t.Errorf("err = %v does not wrap the agent's error", err)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, %v; want %v", got, err, tt.want)
			}
		})
	}
}
